"""The Serve config `docent serve` deploys: its settings reach replicas on any node, its secrets do not travel."""

from __future__ import annotations

import os

from cli.serving import default_serve_config
from docent.serve_config import forwarded_environment, load_serve_config


def test_docent_settings_travel_with_the_application_and_secrets_stay_home(monkeypatch):
    monkeypatch.setenv("DOCENT_AUTH_ENABLED", "false")
    monkeypatch.setenv("DOCENT_RETRIEVAL__NUM_CHUNKS", "7")
    monkeypatch.setenv("DOCENT_API_KEY", "dk_secret")
    monkeypatch.setenv("DOCENT_SLACK__BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    forwarded = forwarded_environment(os.environ)
    assert forwarded["DOCENT_AUTH_ENABLED"] == "false" and forwarded["DOCENT_RETRIEVAL__NUM_CHUNKS"] == "7"
    assert not {"DOCENT_API_KEY", "DOCENT_SLACK__BOT_TOKEN", "OPENAI_API_KEY"} & set(forwarded)

    config = load_serve_config(default_serve_config(), None, 8123, {"index": "docs"})
    application = config.applications[0]
    assert application.args["index"] == "docs" and config.http_options.port == 8123
    assert application.runtime_env["env_vars"]["DOCENT_AUTH_ENABLED"] == "false"
    assert "DOCENT_API_KEY" not in application.runtime_env["env_vars"]
