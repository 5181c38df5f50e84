"""The Dockerfile and .dockerignore, checked without Docker: the instructions parsed as
the builder reads them, the shell of the variant-selecting steps run against stand-ins
(and the real torch of this virtualenv), .dockerignore matched as Docker matches it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.unit.test_compose import fake_commands

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
MLFLOW_DOCKERFILE = ROOT / "docker" / "mlflow" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SERVE_CONFIG = ROOT / "services" / "gateway" / "serve.yaml"


# ── a Dockerfile, as the builder reads it ────────────────────────────────────────────


@dataclass
class Stage:
    image: str  # as written, ${ARG}s unresolved
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def arg_defaults(self) -> dict[str, str]:
        defaults = {}
        for args in self.all("ARG"):
            name, _, value = args.partition("=")
            defaults[name] = value
        return defaults


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m[1], m[0]), text)

    def stage(self, name: str) -> Stage:
        (stage,) = [stage for stage in self.stages if stage.name == name]
        return stage


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with line continuations joined as Docker joins them (no space added)."""
    result, buffer = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not buffer and not stripped):
            continue  # comments (and parser directives), also inside a continued instruction
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1]
            continue
        buffer += line
        keyword, _, args = buffer.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer, "the last instruction ends with a line continuation"
    return result


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in instructions(path.read_text()):
        if keyword == "FROM":
            words = args.split()
            words = [word for word in words if not word.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, not {keyword}"
            name, _, value = args.partition("=")
            global_args[name] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(global_args, stages)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def run_flags_stripped(args: str) -> str:
    return re.sub(r"^(--\S+\s+)+", "", args)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE)


def python_on_path(tmp_path: Path) -> None:
    """`python` in the fake bin folder: this virtualenv's interpreter (a symlink would lose the venv)."""
    wrapper = tmp_path / "bin" / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)


def calls(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


# ── stages, base images, user ────────────────────────────────────────────────────────


def test_multi_stage_build(dockerfile):
    assert [stage.name for stage in dockerfile.stages] == ["builder", "runtime"]
    runtime = dockerfile.stages[-1]
    assert "--from=builder /opt/venv /opt/venv" in runtime.all("COPY")
    # compilers stay in the builder
    builder_installs = " ".join(dockerfile.stage("builder").all("RUN"))
    runtime_installs = " ".join(runtime.all("RUN"))
    assert "build-essential" in builder_installs and "build-essential" not in runtime_installs
    assert "pip install" not in runtime_installs


@pytest.mark.parametrize("path", [DOCKERFILE, MLFLOW_DOCKERFILE], ids=["docent", "mlflow"])
def test_base_images_are_pinned_to_exact_versions(path):
    parsed = parse(path)
    stage_names = {stage.name for stage in parsed.stages}
    for stage in parsed.stages:
        image = parsed.resolve(stage.image)
        if image in stage_names:
            continue
        assert "$" not in image, f"unresolved build arg in FROM {stage.image}"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{image}: no tag"
        assert tag != "latest" and re.match(r"\d+\.\d+\.\d+-", tag), f"{image}: not an exact version"
    assert parsed.resolve(parse(DOCKERFILE).global_args["BASE_IMAGE"]) == parsed.resolve(parsed.stages[0].image)


@pytest.mark.parametrize("path", [DOCKERFILE, MLFLOW_DOCKERFILE], ids=["docent", "mlflow"])
def test_the_image_runs_as_a_non_root_user(path):
    final = parse(path).stages[-1]
    users = final.all("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    keywords = [keyword for keyword, _ in final.instructions]
    assert keywords.index("USER") > max(i for i, keyword in enumerate(keywords) if keyword == "RUN")
    created = " ".join(final.all("RUN"))
    uid = re.search(rf"useradd[^&]*--uid (\d+)[^&]*\b{user}\b", created)
    assert uid and int(uid[1]) != 0


def test_docent_data_dir_is_writable_by_that_user(dockerfile):
    runtime = dockerfile.stages[-1]
    env = " ".join(runtime.all("ENV"))
    assert "DOCENT_DATA_DIR=/data" in env and "HF_HOME=/data/" in env
    assert "chown docent:docent /data" in " ".join(runtime.all("RUN"))


# ── health check and default command ─────────────────────────────────────────────────


def test_healthcheck_calls_the_gateways_healthz(dockerfile):
    (healthcheck,) = dockerfile.stages[-1].all("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--start-period=" in options and "--interval=" in options
    args = exec_form(command)
    port = yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["port"]
    assert port == 8000
    assert args[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{port}/healthz" in args[2]
    compile(args[2], "HEALTHCHECK", "exec")


def test_default_command_serves_config_serve_yaml(dockerfile):
    import typer

    from cli.main import app

    runtime = dockerfile.stages[-1]
    assert exec_form(runtime.all("ENTRYPOINT")[-1]) == ["tini", "--"]
    assert re.search(r"apt-get install [^&]*\btini\b", " ".join(runtime.all("RUN")))
    command = exec_form(runtime.all("CMD")[-1])
    assert command[:2] == ["docent", "serve"]
    params = typer.main.get_command(app).commands["serve"].make_context("serve", command[2:]).params
    assert params["serve_config"] is None  # the Serve config shipped in the package (services/gateway/serve.yaml)
    assert params["host"] == "0.0.0.0"  # services/gateway/serve.yaml's 127.0.0.1 is unreachable from outside a container
    assert runtime.all("WORKDIR")[-1] == "/app" and "config ./config" in runtime.all("COPY")
    application = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]
    module, _, attribute = application["import_path"].partition(":")
    source = ROOT / (module.replace(".", "/") + ".py")
    assert re.search(rf"^def {attribute}\(", source.read_text(), re.MULTILINE)


def test_the_image_has_what_kuberay_runs_in_a_ray_pod(dockerfile):
    # KubeRay starts Ray with `/bin/bash -lc` (bash comes with the Debian base) and probes with wget.
    assert dockerfile.global_args["BASE_IMAGE"].endswith(("-bookworm", "-trixie"))
    assert re.search(r"apt-get install [^&]*\bwget\b", " ".join(dockerfile.stages[-1].all("RUN")))


def test_container_scripts_are_in_the_image(dockerfile):
    copies = " ".join(dockerfile.stages[-1].all("COPY"))
    assert "--chmod=0755 docker/ray-head.sh docker/ingest.sh ./docker/" in copies
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["ray-head"]["command"] == ["docker/ray-head.sh"]
    assert compose["services"]["ingest"]["entrypoint"][-1] == "docker/ingest.sh"


# ── the VARIANT build argument ───────────────────────────────────────────────────────


def torch_step(dockerfile) -> str:
    (step,) = [args for args in dockerfile.stage("builder").all("RUN") if 'case "${VARIANT}"' in args]
    return run_flags_stripped(step)


def test_variant_is_a_build_argument_defaulting_to_cpu(dockerfile):
    assert dockerfile.global_args["VARIANT"] == "cpu"
    for stage in dockerfile.stages:
        assert "VARIANT" in stage.all("ARG"), f"{stage.name} must declare ARG VARIANT to see it"


def test_torch_version_is_the_one_make_installs(dockerfile):
    makefile = (ROOT / "Makefile").read_text()
    (make_version,) = re.findall(r"^TORCH_VERSION \?= (\S+)$", makefile, re.MULTILINE)
    assert dockerfile.stage("builder").arg_defaults()["TORCH_VERSION"] == make_version


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("cpu", ["pip", "install", "torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu"]),
        ("gpu", ["pip", "install", "torch==2.13.0"]),
    ],
)
def test_variant_selects_the_torch_build(dockerfile, tmp_path, variant, expected):
    env, log = fake_commands(tmp_path, "pip")
    env |= dockerfile.stage("builder").arg_defaults() | {"VARIANT": variant}
    subprocess.run(["sh", "-c", torch_step(dockerfile)], env=env, check=True)
    assert calls(log) == [expected]


def test_an_unknown_variant_fails_the_build(dockerfile, tmp_path):
    env, log = fake_commands(tmp_path, "pip")
    env |= dockerfile.stage("builder").arg_defaults() | {"VARIANT": "tpu"}
    done = subprocess.run(["sh", "-c", torch_step(dockerfile)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "VARIANT must be cpu or gpu" in done.stderr
    assert calls(log) == []


@pytest.mark.parametrize(("variant", "passes"), [("cpu", True), ("gpu", False)])
def test_the_build_refuses_a_torch_that_does_not_match_the_variant(dockerfile, tmp_path, variant, passes):
    """The guard step, run with this virtualenv's torch (the CPU build)."""
    import torch

    assert torch.version.cuda is None, "the test expects the CPU build of torch in the virtualenv"
    (guard,) = [args for args in dockerfile.stage("builder").all("RUN") if "torch.version.cuda" in args]
    env, _ = fake_commands(tmp_path)
    python_on_path(tmp_path)
    done = subprocess.run(["sh", "-c", guard], env=env | {"VARIANT": variant}, capture_output=True, text=True, check=False)
    assert (done.returncode == 0) is passes, done.stderr
    assert f"torch {torch.__version__} CUDA None" in done.stdout
    if not passes:
        assert f"torch build does not match VARIANT={variant}" in done.stderr


def test_dependencies_layer_installs_exactly_the_projects_dependencies(dockerfile, tmp_path):
    (step,) = [args for args in dockerfile.stage("builder").all("RUN") if "tomllib" in args]
    requirements = tmp_path / "requirements.txt"
    step = run_flags_stripped(step).replace("/tmp/requirements.txt", str(requirements))
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    env, log = fake_commands(tmp_path, "pip")
    python_on_path(tmp_path)
    subprocess.run(["sh", "-c", step], env=env, check=True, cwd=tmp_path)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirements.read_text().splitlines() == project["dependencies"]
    assert calls(log) == [["pip", "install", "-r", str(requirements)]]


# ── what goes into the image ─────────────────────────────────────────────────────────


def copy_sources(stage: Stage) -> list[str]:
    sources = []
    for args in stage.all("COPY"):
        words = [word for word in args.split() if not word.startswith("--")]
        if any(word.startswith("--from=") for word in args.split()):
            continue
        sources += words[:-1]
    return sources


def test_every_package_of_the_project_is_installed(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {pattern.rstrip("*") for pattern in patterns}
    builder_copies = set(copy_sources(dockerfile.stage("builder")))
    assert top_level <= builder_copies
    assert {"pyproject.toml", "README.md"} <= builder_copies  # README: the project's readme
    assert any("pip install --no-deps ." in args for args in dockerfile.stage("builder").all("RUN"))


def test_copied_sources_exist_and_are_in_the_build_context(dockerfile):
    ignore = DockerIgnore(DOCKERIGNORE)
    for stage in dockerfile.stages:
        for source in copy_sources(stage):
            path = ROOT / source
            assert path.exists(), source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            files = [file for file in files if "__pycache__" not in file.parts]
            assert files, source
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert not ignore.excluded(relative), f"{relative} is copied but .dockerignore leaves it out"


# ── .dockerignore, matched as Docker matches it ──────────────────────────────────────


class DockerIgnore:
    """moby/patternmatcher semantics: patterns relative to the context root, `*` and `?`
    within one path segment, `**` across segments, `!` re-includes, the last matching
    pattern wins, and a pattern matching a parent directory matches what is under it."""

    def __init__(self, path: Path):
        self.patterns: list[tuple[re.Pattern, bool]] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            self.patterns.append((re.compile(self._regex(pattern)), negate))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "^", 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out, i = out + "(.*/)?", i + 1
                else:
                    out += ".*"
                continue
            if char == "*":
                out += "[^/]*"
            elif char == "?":
                out += "[^/]"
            elif char == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
                continue
            else:
                out += re.escape(char)
            i += 1
        return out + "$"

    def excluded(self, relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for regex, negate in self.patterns:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negate
        return result


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".docent/postgres/PG_VERSION",
        ".git/HEAD",
        ".git/objects/pack/pack-1.pack",
        "eval-runs/ray-300/responses.jsonl",
        "experiment-reports/trials.csv",
        "mlruns/0/meta.yaml",
        "docent/__pycache__/cli.cpython-311.pyc",
        "services/gateway/__pycache__/app.cpython-311.pyc",
        "docent.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/abc",
        ".ruff_cache/0.6.0/123",
        ".env",
        ".env.local",
    ],
)
def test_dockerignore_leaves_out_heavy_local_and_secret_paths(ignore, path):
    assert ignore.excluded(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "cli/main.py",
        "docent/migrations/0001_indexes_documents.sql",
        "services/gateway/serve.yaml",
        "docker/ray-head.sh",
    ],
)
def test_dockerignore_keeps_what_the_image_needs(ignore, path):
    assert not ignore.excluded(path)


def test_the_matcher_follows_docker_rules():
    """The matcher itself, on Docker's documented examples, so the tests above mean something."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ".dockerignore"
        path.write_text("# comment\n*/temp*\n*/*/temp*\ntemp?\n**/*.md\n!README.md\n/build\n")
        rules = DockerIgnore(path)
    assert rules.excluded("somedir/temporary.txt") and rules.excluded("somedir/temp")
    assert rules.excluded("somedir/subdir/temporary.txt") and rules.excluded("tempa")
    assert not rules.excluded("temporary.txt") and not rules.excluded("tempab")
    assert rules.excluded("docs/guide.md") and rules.excluded("CHANGES.md") and not rules.excluded("README.md")
    assert rules.excluded("build/lib/x.py") and not rules.excluded("src/build.py")


def test_the_build_context_of_this_checkout_is_small(ignore):
    """Walk the real checkout as `docker build .` would send it: the .venv, the embedded
    PostgreSQL and .git (gigabytes here) must not be part of it."""
    total, files = 0, []
    for folder, dirs, names in os.walk(ROOT):
        relative_folder = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if relative_folder == "." else relative_folder + "/"
        # skip what is left out whole (as Docker does), unless a !pattern reaches inside
        dirs[:] = [d for d in dirs if not ignore.excluded(prefix + d) or _negation_below(ignore, prefix + d)]
        for name in names:
            relative = prefix + name
            if not ignore.excluded(relative):
                total += (Path(folder) / name).stat().st_size
                files.append(relative)
    assert not any(file.startswith((".venv/", ".docent/", ".git/")) for file in files)
    assert total < 20 * 1024 * 1024, f"build context of {total / 2**20:.1f} MiB"


def _negation_below(ignore: DockerIgnore, directory: str) -> bool:
    """A `!pattern` that could re-include something under an excluded directory."""
    inside = "^" + re.escape(directory + "/")
    return any(negate and regex.pattern.startswith(inside) for regex, negate in ignore.patterns)


# ── the MLflow image ─────────────────────────────────────────────────────────────────


def test_mlflow_image_pins_its_packages_and_checks_health():
    parsed = parse(MLFLOW_DOCKERFILE)
    final = parsed.stages[-1]
    defaults = final.arg_defaults()
    install = " ".join(final.all("RUN"))
    pins = {"mlflow": "MLFLOW_VERSION", "psycopg2-binary": "PSYCOPG2_VERSION", "boto3": "BOTO3_VERSION"}
    for package, arg in pins.items():
        assert re.fullmatch(r"\d+(\.\d+)+", defaults[arg]), arg
        assert f'"{package}==${{{arg}}}"' in install
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "http://127.0.0.1:5000/health" in healthcheck
