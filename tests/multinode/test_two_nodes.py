"""A real two-node Ray cluster on this machine (`ray start` twice): ingest embeds on both nodes, Serve answers from both.

Run alone (`make test-multinode`): `ray stop` at the end stops every Ray process of the
machine, so this cannot share a pytest session with the tests' own local Ray.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import FIXTURES
from tests.gateway_fixtures import docent_serving, free_port

pytestmark = pytest.mark.multinode

READY_TIMEOUT_S = 300
NODE_CPUS = "2"  # logical CPUs per node: room for one embedding actor and the parse tasks on each


def _run(*args: str, env: dict[str, str], timeout: float = READY_TIMEOUT_S) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def cluster(tmp_path):
    """A head and a second node: their GCS address, dashboard URL and the environment they run in."""
    gcs, dashboard = free_port(), free_port()
    # A cluster of this machine's own: no token authentication (a token file left in ~/.ray would turn it on
    # for the head alone), no usage reports.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0",
                                                                        "RAY_AUTH_MODE": "disabled"}
    ray = str(Path(sys.executable).parent / "ray")
    try:
        _run(ray, "stop", "--force", env=env)
        _run(ray, "start", "--head", f"--port={gcs}", f"--num-cpus={NODE_CPUS}", f"--dashboard-port={dashboard}",
             "--dashboard-host=127.0.0.1", env=env)
        _run(ray, "start", f"--address=127.0.0.1:{gcs}", f"--num-cpus={NODE_CPUS}", env=env)
        yield f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", env
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)


def _alive_nodes(address: str, env: dict[str, str]) -> list[str]:
    probe = (f"import ray, json; ray.init(address={address!r}, log_to_driver=False); "
             "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))")
    return json.loads(_run(sys.executable, "-c", probe, env=env).stdout.strip().splitlines()[-1])


def _replica_nodes(dashboard: str, env: dict[str, str]) -> dict[str, set[str]]:
    """Deployment name → the nodes its live replicas run on, from Ray's state API."""
    listed = _run(str(Path(sys.executable).parent / "ray"), "list", "actors", "--address", dashboard, "--detail",
                  "--format", "json", "--limit", "1000", "--filter", "state=ALIVE", env=env)
    nodes: dict[str, set[str]] = {}
    for actor in json.loads(listed.stdout):
        name = actor.get("class_name", "")
        if name.startswith("ServeReplica:docent:"):
            nodes.setdefault(name.rsplit(":", 1)[1], set()).add(actor["node_id"])
    return nodes


def test_ingest_and_serve_across_two_ray_nodes(cluster, tmp_path, index_name):
    address, dashboard, cluster_env = cluster
    env = {**cluster_env, "RAY_ADDRESS": address, "DOCENT_INDEX": index_name, "DOCENT_AUTH_ENABLED": "false",
           "DOCENT_INGEST__EMBED_ACTORS": "2", "DOCENT_INGEST__EMBED_BLOCK_ROWS": "4",
           "PYTHONUNBUFFERED": "1"}  # small blocks: a small site still gives both actors work
    assert len(_alive_nodes(address, env)) == 2

    # Eight copies of the fixture site: more blocks than one actor takes in flight, so both actors get work.
    docs = tmp_path / "docs"
    for copy in range(8):
        shutil.copytree(FIXTURES / "site", docs / f"copy{copy}")
    ingested = _run(sys.executable, "-m", "cli", "ingest", str(docs), env=env)
    summary = ingested.stdout
    assert re.search(r"Ray nodes that embedded\s*│\s*2\s*│", summary), summary

    serve_config = yaml.safe_load((Path(__file__).parents[2] / "services/gateway/serve.yaml").read_text())
    for deployment in serve_config["applications"][0]["deployments"]:
        if deployment["name"] in ("embedder", "retriever"):
            deployment["num_replicas"] = 2
            deployment["ray_actor_options"]["num_cpus"] = 0.5
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump(serve_config))
    port = free_port()
    with docent_serving(["--serve-config", str(config_file), "--port", str(port)], env):
        url = f"http://127.0.0.1:{port}"
        for _ in range(8):  # enough requests that both replicas of each deployment take some
            answer = httpx.post(f"{url}/query", json={"query": "How many times is a failed job retried?"}, timeout=60)
            assert answer.status_code == 200 and answer.json()["sources"], answer.text
        replicas = _replica_nodes(dashboard, env)
        assert len(replicas["embedder"]) == 2 and len(replicas["retriever"]) == 2, replicas
