"""Object storage: a real S3-compatible server (moto's, on loopback, checking signatures against its IAM users),
docent's S3 client built from settings, the real ingest (a Ray Data read of the changed objects), eval sets,
golden sets and experiment artifacts in a bucket."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
import uuid

import pytest
import yaml

from docent.db import connect
from docent.errors import SourceError
from docent.settings import Settings
from docent.store import IndexStore
from evaluation.experiment import base_settings, plan_experiment, trial_payload
from evaluation.space import load_space
from ingest.pipeline import run_ingest
from ingest.remote import mirror, mirror_root
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
SITE_FILES = sorted(p for p in (FIXTURES / "site").rglob("*") if p.is_file())
QUESTIONS = [{"question": "How do I install Orbit with pip?", "source": f"{BASE_URL}guide/install.html#install-pip"}]
REFERENCES = [{"question": QUESTIONS[0]["question"], "answer": "pip install orbit"}]
ALLOW_EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# Settings naming variables other than the AWS_* ones: the keys must come from where the settings say.
OWN_KEY_VARIABLES = {"s3_access_key_id_env": "DOCS_S3_KEY_ID", "s3_secret_access_key_env": "DOCS_S3_SECRET"}


def _moto_auth(url: str, requests_without_auth: str) -> None:
    """Moto's switch for checking credentials ("0": from now on; "inf": never)."""
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=requests_without_auth.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request).close()


@pytest.fixture(scope="module")
def s3_server():
    """moto's server with one IAM user allowed everything; other keys are refused, as by S3 or MinIO."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    iam.create_user(UserName="docent")
    iam.put_user_policy(UserName="docent", PolicyName="all", PolicyDocument=json.dumps(ALLOW_EVERYTHING))
    key = iam.create_access_key(UserName="docent")["AccessKey"]
    _moto_auth(url, "0")
    yield url, key["AccessKeyId"], key["SecretAccessKey"]
    _moto_auth(url, "inf")
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch):
    """A fresh bucket holding the fixture site under `site/`, and an S3 client; the AWS_* variables hold good keys."""
    from pyarrow import fs

    url, key_id, secret = s3_server
    for name, value in {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL", *OWN_KEY_VARIABLES.values()):
        monkeypatch.delenv(name, raising=False)  # also restores what docent exports for MLflow
    client = fs.S3FileSystem(endpoint_override=url, scheme="http", access_key=key_id, secret_key=secret,
                             region="us-east-1", allow_bucket_creation=True)
    name = f"docs-{uuid.uuid4().hex[:8]}"
    client.create_dir(name)
    for path in SITE_FILES:
        _put(client, f"{name}/site/{path.relative_to(FIXTURES / 'site').as_posix()}", path.read_bytes())
    return client, name


def _put(client, path: str, data: bytes) -> None:
    with client.open_output_stream(path) as out:
        out.write(data)


def _own_key_variables(monkeypatch, s3_server) -> dict:
    """Good keys in the variables OWN_KEY_VARIABLES names, refused ones in AWS_*; the settings naming them."""
    _, key_id, secret = s3_server
    monkeypatch.setenv(OWN_KEY_VARIABLES["s3_access_key_id_env"], key_id)
    monkeypatch.setenv(OWN_KEY_VARIABLES["s3_secret_access_key_env"], secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTDOCENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    return {"ingest": OWN_KEY_VARIABLES}


async def _chunk_sources(settings: Settings) -> set[str]:
    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.require(settings.index_name)
        return await store.pages(index)
    finally:
        await conn.close()


def test_an_s3_prefix_is_ingested_like_a_folder_and_kept_in_step(ray_local, bucket):
    client, name = bucket
    uri = f"s3://{name}/site"
    settings = Settings(index=f"s3-{uuid.uuid4().hex[:8]}", chunking={"chunk_size": 200, "chunk_overlap": 20})

    first = run_ingest(uri, settings, base_url=BASE_URL)
    assert first.files_read == len(SITE_FILES) and first.chunks_added > 0
    assert f"{BASE_URL}guide/install.html" in asyncio.run(_chunk_sources(settings))

    again = run_ingest(uri, settings, base_url=BASE_URL)  # nothing changed: nothing downloaded or embedded
    assert again.chunks_added == 0 and again.files_unchanged == len(SITE_FILES)

    extra_page = b"# Extra\n\nOrbit also runs on a laptop, with the `orbit dev` command.\n"
    _put(client, f"{name}/site/guide/extra.md", extra_page)
    changed_page = (FIXTURES / "site" / "index.md").read_bytes() + b"\n\nOrbit now ships a kelvin-scale thermometer.\n"
    _put(client, f"{name}/site/index.md", changed_page)
    client.delete_file(f"{name}/site/guide/install.rst")
    synced = mirror(uri, settings)  # only the new and the changed object are read again
    assert (synced.downloaded, synced.removed, synced.unchanged) == (2, 1, len(SITE_FILES) - 2)
    assert (mirror_root(uri, settings) / "index.md").read_bytes() == changed_page
    assert not (mirror_root(uri, settings) / "guide" / "install.rst").exists()

    changed = run_ingest(uri, settings, base_url=BASE_URL, prune=True)
    assert changed.files_read == 2 and changed.files_removed == 1
    pages = asyncio.run(_chunk_sources(settings))
    assert f"{BASE_URL}guide/extra.html" in pages and f"{BASE_URL}guide/install.html" not in pages
    assert mirror(uri, settings).downloaded == 0  # idempotent


def test_keys_come_from_the_variables_the_settings_name(ray_local, bucket, s3_server, monkeypatch):
    _, name = bucket
    uri = f"s3://{name}/site"
    settings = Settings(**_own_key_variables(monkeypatch, s3_server))
    synced = mirror(uri, settings)  # the Ray Data tasks read with the same keys
    assert synced.downloaded == len(SITE_FILES)
    root = mirror_root(uri, settings)
    assert all((root / p.relative_to(FIXTURES / "site")).read_bytes() == p.read_bytes() for p in SITE_FILES)

    with pytest.raises(SourceError, match=r"refused the keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") as refused:
        mirror(uri, Settings())  # the defaults name AWS_*, which hold keys the store does not know
    assert f"cannot list {uri}" in str(refused.value)
    monkeypatch.delenv(OWN_KEY_VARIABLES["s3_secret_access_key_env"])
    with pytest.raises(SourceError, match="DOCS_S3_KEY_ID is set but DOCS_S3_SECRET is not"):
        mirror(uri, settings)


def test_unreadable_sources_are_clear_errors(bucket):
    _, name = bucket
    settings = Settings()
    with pytest.raises(SourceError, match="no objects under"):
        mirror(f"s3://{name}/nothing-here", settings)
    missing = f"no-such-bucket-{uuid.uuid4().hex[:6]}"
    with pytest.raises(SourceError, match=f"cannot list s3://{missing}/docs: .*no bucket '{missing}'"):
        mirror(f"s3://{missing}/docs", settings)
    with pytest.raises(SourceError, match="is not an S3 URI"):
        mirror("s3:///docs", settings)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = Settings(ingest={"s3_endpoint_url": f"http://127.0.0.1:{port}"})
    with pytest.raises(SourceError, match=f"http://127.0.0.1:{port} cannot be reached: check ingest.s3_endpoint_url"):
        mirror(f"s3://{name}/site", down)
    with pytest.raises(SourceError, match="is not an http"):
        mirror(f"s3://{name}/site", Settings(ingest={"s3_endpoint_url": "minio:9000"}))


def test_the_cli_ingests_from_s3(ray_local, bucket, tmp_path):
    client, name = bucket
    index = f"s3cli-{uuid.uuid4().hex[:8]}"
    done = _docent("ingest", f"s3://{name}/site", "--base-url", BASE_URL, "--index", index, "--chunk-size", "200",
                   "--chunk-overlap", "20")
    assert done.returncode == 0, done.stderr
    assert f"index {index}" in done.stdout
    missing = _docent("ingest", f"s3://{name}/absent", "--index", index)
    assert missing.returncode == 2 and "no objects under" in missing.stderr and "Traceback" not in missing.stderr

    # Eval sets and references are read from the bucket; golden sets and references are written to it.
    _put(client, f"{name}/eval/eval.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS).encode())
    _put(client, f"{name}/eval/references.json", json.dumps(REFERENCES).encode())
    run = _docent("eval", "run", "--eval", f"s3://{name}/eval/eval.jsonl", "--references",
                  f"s3://{name}/eval/references.json", "--index", index, "--llm", "extractive", "--out",
                  str(tmp_path / "run"), "--json")
    assert run.returncode == 0, run.stderr
    every = json.loads(run.stdout)["aggregates"]["all"]
    assert every["questions"] == 1 and every["with_reference"] == 1 and every["retrieval_score"] == 1.0
    absent = _docent("eval", "run", "--eval", f"s3://{name}/eval/absent.jsonl", "--index", index)
    assert absent.returncode == 2 and f"no object at s3://{name}/eval/absent.jsonl" in " ".join(absent.stderr.split())


def test_an_experiment_space_reads_its_eval_set_and_references_from_s3(bucket, tmp_path):
    client, name = bucket
    _put(client, f"{name}/eval/eval.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS).encode())
    _put(client, f"{name}/eval/references.json", json.dumps(REFERENCES).encode())
    space = {"name": f"s3space-{uuid.uuid4().hex[:6]}", "corpus": f"s3://{name}/site", "base_url": BASE_URL,
             "eval": f"s3://{name}/eval/eval.jsonl", "references": f"s3://{name}/eval/references.json",
             "settings": {"data_dir": str(tmp_path / "data")}, "grid": {"chunk_size": [200, 400]}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    loaded = load_space(tmp_path / "space.yaml")
    plan = plan_experiment(loaded, base_settings(loaded, None))  # what `experiment run --dry-run` does
    assert [q.question for q in plan.eval_set.questions] == [QUESTIONS[0]["question"]]
    assert plan.references_sha is not None and len(plan.trials) == 2
    payload = trial_payload(plan, plan.trials[0])
    assert payload["eval"] == space["eval"] and payload["references"] == space["references"]  # workers fetch them

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space | {"eval": f"s3://{name}/eval/absent.jsonl"}))
    loaded = load_space(tmp_path / "space.yaml")
    with pytest.raises(SourceError, match=f"no object at s3://{name}/eval/absent.jsonl"):
        plan_experiment(loaded, base_settings(loaded, None))


def test_experiment_artifacts_go_to_the_bucket(bucket, s3_server, monkeypatch, tmp_path):
    from evaluation.tracking import log_trial

    client, name = bucket
    settings = Settings(data_dir=tmp_path / "data", experiment={"artifact_location": f"s3://{name}/mlflow"},
                        **_own_key_variables(monkeypatch, s3_server))
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"question": QUESTIONS[0]["question"], "answer": "pip install orbit"}) + "\n")
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps(QUESTIONS[0]) + "\n")
    trial = {"key": "k" * 64, "label": "chunk_size=200", "index": "orbit", "configuration": {"chunk_size": 200}}
    run_id = log_trial(settings, f"s3art-{uuid.uuid4().hex[:6]}", trial, {"retrieval_score": 1.0}, [responses],
                       (eval_file, "0" * 64))

    from pyarrow import fs

    stored = client.get_file_info(fs.FileSelector(f"{name}/mlflow", recursive=True))
    uploaded = [info.path for info in stored if info.type == fs.FileType.File]
    assert any(run_id in path and path.endswith("/artifacts/responses.jsonl") for path in uploaded), uploaded


def test_golden_sets_are_written_to_s3(ray_local, bucket, llm_server, tmp_path):
    client, name = bucket
    index = f"s3gold-{uuid.uuid4().hex[:8]}"
    settings = Settings(index=index, chunking={"chunk_size": 200, "chunk_overlap": 20})
    run_ingest(f"s3://{name}/site", settings, base_url=BASE_URL)
    config = tmp_path / "docent.yaml"
    config.write_text(yaml.safe_dump({"generation": {"llms": [
        {"name": "golden", "model": "golden", "base_url": llm_server.base_url}]}}))
    target = f"s3://{name}/golden/set.jsonl"
    done = _docent("--config", str(config), "eval", "golden", "--llm", "golden", "--index", index, "--sections", "3",
                   "--min-chars", "50", "--seed", "1", "--out", target, "--json")
    assert done.returncode == 0, done.stderr
    kept = json.loads(done.stdout)["kept"]
    with client.open_input_stream(f"{name}/golden/set.jsonl") as written:
        rows = [json.loads(line) for line in written.read().decode().splitlines()]
    assert len(rows) == kept > 0 and all({"question", "source", "answer"} <= set(r) for r in rows)


def _docent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
