"""Storage URIs: a local path or an s3:// object (AWS S3, MinIO, any S3-compatible store).

Every s3:// read and write docent does goes through here. **The connection** is built from
settings in one place, `s3_filesystem` (pyarrow's S3 client): endpoint
`ingest.s3_endpoint_url` (else `AWS_ENDPOINT_URL`, else AWS), region `ingest.s3_region`,
and keys from the environment variables that `ingest.s3_access_key_id_env`,
`s3_secret_access_key_env` and `s3_session_token_env` name (AWS_ACCESS_KEY_ID, … by default):
settings files name where the keys are, never the keys. With those variables unset the
default AWS chain applies (~/.aws, an instance or pod role). `s3_environment` hands the same
connection to boto3-based clients (MLflow's S3 artifact store).

**Single files** (eval sets, references, golden sets, exports): `fetch` gives a local copy
of an object (cached under `<data_dir>/cache/s3/`, downloaded again only when it changed);
`local_target` + `publish` write a file locally, then upload it when it is complete.
Docs trees are mirrored by the ingest job (`ingest/remote.py`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from docent.errors import SourceError
from docent.settings import IngestSettings, Settings

REMOTE_SCHEMES = ("s3://",)
_COPY_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class RemoteObject:
    """One listed object: `path` is `bucket/key`, as pyarrow names it."""

    path: str
    size: int
    mtime: float  # seconds since the epoch


def is_remote(source: str | Path) -> bool:
    return str(source).startswith(REMOTE_SCHEMES)


# ── the connection ──────────────────────────────────────────────────────────────────────


def s3_filesystem(settings: Settings):
    """pyarrow's S3 client for the store and keys the settings name; `SourceError` when they are unusable."""
    from pyarrow import fs

    options: dict[str, Any] = {}
    if endpoint := _endpoint(settings.ingest):
        options |= {"endpoint_override": endpoint, "scheme": urlsplit(endpoint).scheme}
    if settings.ingest.s3_region:
        options["region"] = settings.ingest.s3_region
    if keys := _keys(settings.ingest):
        options |= {"access_key": keys[0], "secret_key": keys[1]}
        if keys[2]:
            options["session_token"] = keys[2]
    try:
        return fs.S3FileSystem(**options)
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot set up the S3 client: {_reason(exc)}") from None


def s3_environment(settings: Settings) -> dict[str, str]:
    """The same connection as environment variables, for boto3 (MLflow's S3 artifact store reads them)."""
    env: dict[str, str] = {}
    if keys := _keys(settings.ingest):
        env |= {"AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1]}
        if keys[2]:
            env["AWS_SESSION_TOKEN"] = keys[2]
    if settings.ingest.s3_region:
        env["AWS_DEFAULT_REGION"] = settings.ingest.s3_region
    if endpoint := _endpoint(settings.ingest):
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    return env


def export_s3_environment(settings: Settings) -> None:
    """Make this process's boto3 clients use the settings' store; an explicit MLFLOW_S3_ENDPOINT_URL is kept."""
    try:
        environment = s3_environment(settings)
    except SourceError:
        return  # unusable S3 settings must not stop MLflow work that needs no bucket; a bucket read reports them
    for name, value in environment.items():
        if name == "MLFLOW_S3_ENDPOINT_URL":
            os.environ.setdefault(name, value)
        else:
            os.environ[name] = value


def _endpoint(ingest: IngestSettings) -> str | None:
    endpoint = ingest.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    parsed = urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SourceError(f"S3 endpoint {endpoint!r} (ingest.s3_endpoint_url or AWS_ENDPOINT_URL) is not an "
                          "http(s) URL: give one like http://minio:9000")
    return endpoint


def _keys(ingest: IngestSettings) -> tuple[str, str, str | None] | None:
    """(key id, secret, session token) from the variables the settings name; None: the default AWS chain."""
    key_id = os.environ.get(ingest.s3_access_key_id_env)
    secret = os.environ.get(ingest.s3_secret_access_key_env)
    if key_id and secret:
        return key_id, secret, os.environ.get(ingest.s3_session_token_env) or None
    if key_id or secret:
        given, missing = ((ingest.s3_access_key_id_env, ingest.s3_secret_access_key_env) if key_id
                          else (ingest.s3_secret_access_key_env, ingest.s3_access_key_id_env))
        raise SourceError(f"S3 credentials: {given} is set but {missing} is not: set both (the settings "
                          "ingest.s3_access_key_id_env and s3_secret_access_key_env name them), or neither")
    return None


def bucket_path(uri: str) -> str:
    """`bucket/prefix` of an s3:// URI; `SourceError` for one without a bucket or with `..` in its key."""
    path = uri.removeprefix("s3://").rstrip("/")
    bucket = path.split("/", 1)[0]
    if not is_remote(uri) or not bucket:
        raise SourceError(f"{uri!r} is not an S3 URI: give s3://BUCKET/PREFIX")
    if ".." in PurePosixPath(path).parts:
        raise SourceError(f"{uri}: '..' in an S3 key is not supported (it would leave the local copy's folder)")
    return path


def unchanged_copy(local: Path, obj: RemoteObject) -> bool:
    if not local.is_file():
        return False
    stat = local.stat()
    return stat.st_size == obj.size and int(stat.st_mtime) == int(obj.mtime)


def write_copy(local: Path, data: bytes, mtime: float) -> None:
    """Write beside its place, then move it in: a stopped sync leaves no half file. The object's time is kept
    on the copy: it is what the next sync compares."""
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".partial")
    partial.write_bytes(data)
    os.utime(partial, (mtime, mtime))
    os.replace(partial, local)


# ── single files ────────────────────────────────────────────────────────────────────────


def fetch(source: str | Path, settings: Settings) -> Path:
    """A local path for `source`: a local path as is; an s3:// object downloaded (again only when it changed)
    under `<data_dir>/cache/s3/`. `SourceError` when it cannot be read."""
    if not is_remote(source):
        return Path(source)
    from pyarrow import fs

    uri = str(source)
    key = bucket_path(uri)
    filesystem = s3_filesystem(settings)
    try:
        info = filesystem.get_file_info(key)
    except (OSError, ValueError) as exc:
        raise storage_failure("read", uri, exc, settings) from None
    if info.type != fs.FileType.File:
        raise SourceError(f"no object at {uri}: check the bucket and key")
    obj = RemoteObject(info.path, info.size, info.mtime.timestamp())
    local = _cache_path(uri, settings)
    if not unchanged_copy(local, obj):
        try:
            with filesystem.open_input_stream(key) as stream:
                data = stream.read()
        except OSError as exc:
            raise storage_failure("download", uri, exc, settings) from None
        write_copy(local, data, obj.mtime)
    return local


def exists(target: str, settings: Settings) -> bool:
    from pyarrow import fs

    try:
        return s3_filesystem(settings).get_file_info(bucket_path(target)).type == fs.FileType.File
    except (OSError, ValueError) as exc:
        raise storage_failure("read", target, exc, settings) from None


def publish(local: Path, target: str, settings: Settings) -> None:
    """Upload a finished local file to an s3:// URI."""
    filesystem = s3_filesystem(settings)
    try:
        with local.open("rb") as source, filesystem.open_output_stream(bucket_path(target)) as sink:
            while chunk := source.read(_COPY_BUFFER_BYTES):
                sink.write(chunk)
    except OSError as exc:
        raise storage_failure("write", target, exc, settings) from None


def local_target(target: str | Path, settings: Settings) -> Path:
    """Where to write what goes to `target`: itself when local; for an s3:// URI a cached copy (holding the
    object's current content, so a resumable writer continues it), to `publish` when done."""
    if not is_remote(target):
        return Path(target)
    uri = str(target)
    if exists(uri, settings):
        return fetch(uri, settings)
    local = _cache_path(uri, settings)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.unlink(missing_ok=True)
    return local


def _cache_path(uri: str, settings: Settings) -> Path:
    return settings.data_dir / "cache" / "s3" / bucket_path(uri)


# ── errors ──────────────────────────────────────────────────────────────────────────────

# What the AWS SDK's error names mean for the operator (pyarrow's messages carry them).
_REFUSED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "ExpiredToken", "InvalidToken")
_NO_BUCKET = ("NO_SUCH_BUCKET",)
_UNREACHABLE = ("NETWORK_CONNECTION", "Could not connect", "Could not resolve host", "curlCode")


def storage_failure(action: str, uri: str, exc: Exception, settings: Settings) -> SourceError:
    """`cannot <action> <uri>: <the store's reason>; <what to check>`."""
    text = str(exc)
    reason = _reason(exc)
    if any(marker in text for marker in _REFUSED):
        hint = _credentials_hint(settings.ingest)
    elif any(marker in text for marker in _NO_BUCKET):
        hint = f"no bucket {uri.removeprefix('s3://').split('/', 1)[0]!r} at {_store(settings)}: check the URI"
    elif any(marker in text for marker in _UNREACHABLE):
        hint = (f"{_store(settings)} cannot be reached: check ingest.s3_endpoint_url (or AWS_ENDPOINT_URL) "
                "and that the store is up")
    else:
        hint = f"check the URI, the endpoint ({_store(settings)}) and the credentials"
    return SourceError(f"cannot {action} {uri}: {reason}; {hint}")


def _credentials_hint(ingest: IngestSettings) -> str:
    names = f"{ingest.s3_access_key_id_env} / {ingest.s3_secret_access_key_env}"
    if os.environ.get(ingest.s3_access_key_id_env):
        return (f"the store refused the keys in {names}: check them and that they may use this bucket "
                "(ingest.s3_access_key_id_env and s3_secret_access_key_env name other variables)")
    return (f"no keys in {names} (ingest.s3_access_key_id_env / s3_secret_access_key_env), and the default "
            "AWS credentials were refused: set those variables, or give this machine a role that may use the bucket")


def _store(settings: Settings) -> str:
    try:
        return _endpoint(settings.ingest) or "AWS S3"
    except SourceError:
        return "the configured endpoint"


def _reason(exc: Exception) -> str:
    """The first line of an error, without the SDK's request id."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first.split(" (Request ID:")[0]
