"""A stage's replica killed under load: clients get 200 or 503 with Retry-After, never a 500,
no request waits longer than `serving.request_timeout_s`, and answers come back by themselves."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Self

import httpx
import pytest

from tests.gateway_fixtures import serve_docent

pytestmark = pytest.mark.integration

CLIENTS = 5
REQUEST_TIMEOUT_S = 4.0
SLACK_S = 4.0  # the gateway's own work and the HTTP round trip around its deadline
RECOVERY_LIMIT_S = 90.0
QUESTION = "How many times is a failed job retried?"


@dataclass
class Outcome:
    started: float  # time.monotonic() when the request was sent
    status: int
    seconds: float
    retry_after: bool
    detail: str


@pytest.fixture(scope="module")
def gateway(ray_local, tmp_path_factory):
    with serve_docent(
        tmp_path_factory.mktemp("replica-faults"), auth_enabled=False, serving={"request_timeout_s": REQUEST_TIMEOUT_S},
        gateway={"rate_limit": {"enabled": False}, "cache": {"enabled": False}},
    ) as served:
        yield served


class Load:
    """`CLIENTS` threads asking in a loop until stopped, every outcome kept with when it ended and began."""

    def __init__(self, url: str):
        self.url, self.outcomes, self.stopped = url, [], threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._ask, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT_S + RECOVERY_LIMIT_S)

    def _ask(self, client: int) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S + RECOVERY_LIMIT_S) as http:
            asked = 0
            while not self.stopped.is_set():
                started = time.monotonic()
                body = {"query": f"{QUESTION} ({client}-{asked})", "options": {"llm": "extractive"}}
                response = http.post("/query", json=body)
                seconds = time.monotonic() - started
                with self.lock:
                    self.outcomes.append((time.monotonic(), Outcome(
                        started, response.status_code, seconds, "Retry-After" in response.headers, response.text[:200],
                    )))
                asked += 1

    def since(self, moment: float) -> list[Outcome]:
        with self.lock:
            return [outcome for ended, outcome in self.outcomes if ended >= moment]


def _kill_replica(deployment: str) -> None:
    import ray
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    replicas = [
        replica for replica in details["applications"]["docent"]["deployments"][deployment]["replicas"]
        if replica["state"] == "RUNNING"
    ]
    assert replicas, f"no running replica of {deployment}"
    ray.kill(ray.get_actor(replicas[0]["actor_name"], namespace="serve"), no_restart=True)


def _recovered_after(load: Load, killed_at: float) -> float:
    """Seconds from the kill until the last `CLIENTS` answers, to requests sent after it, are 200s again
    (a request in flight at the kill may still be answered by the replica before it dies)."""
    while time.monotonic() - killed_at < RECOVERY_LIMIT_S:
        recent = [o for o in load.since(killed_at) if o.started > killed_at]
        if len(recent) >= CLIENTS and all(o.status == 200 for o in recent[-CLIENTS:]):
            return time.monotonic() - killed_at
        time.sleep(0.2)
    raise AssertionError(f"no recovery within {RECOVERY_LIMIT_S} s: {[o.status for o in load.since(killed_at)][-20:]}")


@pytest.mark.parametrize("deployment", ["embedder", "generator"])
def test_a_replica_killed_under_load_is_503s_bounded_by_the_request_timeout_then_answers(gateway, deployment):
    during = _kill_under_load(gateway, deployment)
    statuses = [o.status for o in during]
    assert set(statuses) <= {200, 503}, [o.detail for o in during if o.status not in (200, 503)][:3]
    assert all(o.retry_after for o in during if o.status == 503)
    assert max(o.seconds for o in during) <= REQUEST_TIMEOUT_S + SLACK_S


def test_the_gateway_replica_killed_under_load_fails_only_the_requests_it_held_then_answers(gateway):
    """Serve's proxy answers the requests the dead replica held with a plain-text 500 (docent never
    sees them); the others wait for the replacement, and answers come back by themselves."""
    during = _kill_under_load(gateway, "gateway")
    failed = [o for o in during if o.status != 200]
    assert len(failed) <= CLIENTS and all(o.status == 500 for o in failed), [(o.status, o.detail) for o in failed]


def _answering(url: str, within_s: float = RECOVERY_LIMIT_S) -> None:
    """Wait until the gateway is ready and answers (the previous test's replacement replica may still load)."""
    deadline = time.monotonic() + within_s
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            asked = {"query": QUESTION, "options": {"llm": "extractive"}}
            if http.get("/readyz").status_code == 200 and http.post("/query", json=asked).status_code == 200:
                return
            assert time.monotonic() < deadline, "the gateway is not answering"
            time.sleep(0.5)


def _kill_under_load(gateway, deployment: str) -> list[Outcome]:
    _answering(gateway.url)
    with Load(gateway.url) as load:
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        while not any(o.status == 200 for o in load.since(0)):
            assert time.monotonic() < deadline, "the load never got an answer"
            time.sleep(0.2)
        killed_at = time.monotonic()
        _kill_replica(deployment)
        recovered_s = _recovered_after(load, killed_at)
    during = load.since(killed_at)
    statuses = [o.status for o in during]
    print(f"\n{deployment} killed under {CLIENTS} clients: {len(during)} requests, {statuses.count(503)} × 503, "
          f"{statuses.count(500)} × 500, longest {max(o.seconds for o in during):.1f} s, "
          f"all answering again after {recovered_s:.1f} s")
    _answering(gateway.url)  # /readyz says so too
    return during
