"""Running the Serve application from its config file, as `serve run` does, from `docent serve`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from docent.errors import DocentError, UsageError

APP_NAME = "docent"


class ServeConfigError(UsageError, ValueError):
    """The Serve config file cannot be used as given."""


class DeployFailed(DocentError):
    """The application did not come up: a deployment failed or was not running in time."""


def load_serve_config(path: Path, host: str | None, port: int | None, app_args: dict[str, Any]):
    """The validated Serve config, with the listen address and the application's args overridden."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    if not path.is_file():
        raise ServeConfigError(f"Serve config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        config = ServeDeploySchema.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ServeConfigError(f"{path} is not a valid Serve config: {exc}") from exc
    if host:
        config.http_options.host = host
    if port:
        config.http_options.port = port
    settings_env = forwarded_environment(os.environ)
    for application in config.applications:
        application.args = {**(application.args or {}), **app_args}
        runtime_env = dict(application.runtime_env or {})
        runtime_env["env_vars"] = {**settings_env, **runtime_env.get("env_vars", {})}
        application.runtime_env = runtime_env
    return config


_SECRET_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def forwarded_environment(environ) -> dict[str, str]:
    """The DOCENT_* settings of this shell, for replicas on other nodes (a raylet has the environment of
    `ray start`, not this one's). Secrets stay out: a runtime env is readable from Ray's dashboard, so
    keys and passwords belong in the cluster's own environment."""
    return {
        name: value for name, value in environ.items()
        if name.startswith("DOCENT_") and not name.endswith(_SECRET_SUFFIXES)
    }


def apply_serve_environment(settings) -> None:
    """Ray Serve reads these when Ray starts: set them before a local Ray is started (a cluster sets its own)."""
    if settings.serving.throughput_optimized:
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    os.environ.setdefault("RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE", str(settings.serving.log_buffer_records))
    # The gateway replica otherwise lingers 30 s at shutdown so that an external load
    # balancer can deregister it; a Ray started here has none in front of it.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "0")


def deploy(config, timeout_s: float) -> dict[str, str]:
    """Start Serve and deploy every application of `config`; returns {app: status} once all run."""
    from ray import serve
    from ray.serve._private.api import serve_start  # what `serve run CONFIG` uses; no public equivalent

    client = serve_start(http_options=config.http_options.model_dump(), proxy_location=config.proxy_location)
    client.deploy_apps(config, _blocking=False)
    deadline = time.monotonic() + timeout_s
    names = [application.name for application in config.applications]
    while True:
        applications = serve.status().applications
        states = {name: applications[name].status if name in applications else "NOT_STARTED" for name in names}
        failed = [name for name, state in states.items() if state in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            raise DeployFailed(f"application {failed[0]} failed to deploy: {applications[failed[0]].message}")
        if all(state == "RUNNING" for state in states.values()):
            return states
        if time.monotonic() > deadline:
            raise DeployFailed(f"not running after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)


# --- where a running `docent serve` listens ---------------------------------------------

SERVING_RECORD = "serving.json"  # under the data dir, while `docent serve` runs
URL_VARIABLE = "DOCENT_URL"


def record_serving(data_dir: Path, url: str) -> Path:
    """Note where this process serves, so that `docent query` finds it whatever its port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    record = data_dir / SERVING_RECORD
    record.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return record


def forget_serving(data_dir: Path) -> None:
    """Remove this process's note (another process's is left alone)."""
    record = data_dir / SERVING_RECORD
    try:
        if json.loads(record.read_text()).get("pid") == os.getpid():
            record.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def gateway_url(settings) -> str:
    """The gateway to ask: DOCENT_URL, else serving.url when set, else the `docent serve` running on
    this data dir, else serving.url's default."""
    if url := os.environ.get(URL_VARIABLE):
        return url
    if "url" in settings.serving.model_fields_set:
        return settings.serving.url
    return _served_url(settings.data_dir) or settings.serving.url


def _served_url(data_dir: Path) -> str | None:
    try:
        record = json.loads((data_dir / SERVING_RECORD).read_text())
        pid, url = int(record["pid"]), str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from docent.db import process_gone

    return None if process_gone(pid) else url  # gone: killed before it could remove its note
