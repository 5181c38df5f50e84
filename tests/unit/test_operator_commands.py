"""What operators run around the service: `docent --version`, and finding the running gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from cli.main import app
from docent.serve_config import SERVING_RECORD, URL_VARIABLE, forget_serving, gateway_url, record_serving
from docent.settings import Settings


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"docent {version('docent')}"


def test_query_asks_the_gateway_docent_serve_started_whatever_its_port(tmp_path, monkeypatch):
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    settings = Settings(data_dir=tmp_path)
    assert gateway_url(settings) == "http://127.0.0.1:8000"  # nothing serving: the default
    record_serving(tmp_path, "http://127.0.0.1:8300")
    assert gateway_url(settings) == "http://127.0.0.1:8300"
    assert gateway_url(Settings(data_dir=tmp_path, serving={"url": "http://gw:9000"})) == "http://gw:9000"
    monkeypatch.setenv(URL_VARIABLE, "http://elsewhere:8000")
    assert gateway_url(Settings(data_dir=tmp_path, serving={"url": "http://gw:9000"})) == "http://elsewhere:8000"
    monkeypatch.delenv(URL_VARIABLE)
    forget_serving(tmp_path)
    assert not (tmp_path / SERVING_RECORD).exists() and gateway_url(settings) == "http://127.0.0.1:8000"


def test_a_server_that_died_without_removing_its_note_is_not_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / SERVING_RECORD).write_text(json.dumps({"url": "http://127.0.0.1:8300", "pid": gone.pid}))
    assert gateway_url(Settings(data_dir=tmp_path)) == "http://127.0.0.1:8000"
    (tmp_path / SERVING_RECORD).write_text("{not json")
    assert gateway_url(Settings(data_dir=tmp_path)) == "http://127.0.0.1:8000"


def test_another_process_note_is_left_alone(tmp_path):
    (tmp_path / SERVING_RECORD).write_text(json.dumps({"url": "http://127.0.0.1:8300", "pid": os.getppid()}))
    forget_serving(tmp_path)
    assert (tmp_path / SERVING_RECORD).exists()
