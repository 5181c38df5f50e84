"""Docs trees in object storage: an `s3://bucket/prefix` source is mirrored to a local folder, then ingested.

The mirror lives under `<data_dir>/corpora/s3/<bucket>/<prefix>` and is kept in step with
the bucket: objects whose size or modification time changed are downloaded again, objects
gone from the bucket are removed (so `--prune` works as for a folder). The ingest then hashes
the mirror's files as usual, so an unchanged object is neither downloaded nor re-embedded.

Credentials and region come from the usual AWS environment (`AWS_ACCESS_KEY_ID`, …); an
S3-compatible store (MinIO, a test server) is named by `ingest.s3_endpoint_url` or
`AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from docent.settings import Settings
from ingest.errors import SourceError

REMOTE_SCHEMES = ("s3://",)
_COPY_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class MirrorReport:
    root: Path
    downloaded: int
    unchanged: int
    removed: int


def is_remote(source: str | Path) -> bool:
    return str(source).startswith(REMOTE_SCHEMES)


def mirror_root(uri: str, settings: Settings) -> Path:
    bucket_and_prefix = uri.removeprefix("s3://").strip("/")
    return settings.data_dir / "corpora" / "s3" / bucket_and_prefix


def mirror(uri: str, settings: Settings) -> MirrorReport:
    """Bring the local mirror of `uri` in step with the bucket; `SourceError` when it cannot be read."""
    from pyarrow import fs

    filesystem = _s3(settings)
    remote_root = uri.removeprefix("s3://").strip("/")
    try:
        listing = filesystem.get_file_info(fs.FileSelector(remote_root, recursive=True))
    except FileNotFoundError:
        listing = []
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot list {uri}: {_reason(exc)}") from None
    objects = {info.path[len(remote_root) + 1:]: info for info in listing if info.type == fs.FileType.File}
    if not objects:
        raise SourceError(f"no objects under {uri}")
    root = mirror_root(uri, settings)
    downloaded = unchanged = 0
    for relative, info in sorted(objects.items()):
        local = root / relative
        if _same(local, info):
            unchanged += 1
            continue
        _download(filesystem, info, local)
        downloaded += 1
    removed = _remove_gone(root, set(objects))
    return MirrorReport(root, downloaded, unchanged, removed)


def _s3(settings: Settings):
    from pyarrow import fs

    endpoint = settings.ingest.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    options = {"endpoint_override": endpoint} if endpoint else {}
    if endpoint and endpoint.startswith("http://"):
        options["scheme"] = "http"
    return fs.S3FileSystem(**options)


def _same(local: Path, info) -> bool:
    if not local.is_file():
        return False
    stat = local.stat()
    return stat.st_size == info.size and int(stat.st_mtime) == int(info.mtime.timestamp())


def _download(filesystem, info, local: Path) -> None:
    """Write the object beside its place, then move it in: a stopped sync leaves no half file."""
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".partial")
    try:
        with filesystem.open_input_stream(info.path) as source, partial.open("wb") as target:
            while chunk := source.read(_COPY_BUFFER_BYTES):
                target.write(chunk)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise SourceError(f"cannot download s3://{info.path}: {_reason(exc)}") from None
    mtime = info.mtime.timestamp()
    os.utime(partial, (mtime, mtime))
    os.replace(partial, local)


def _remove_gone(root: Path, kept: set[str]) -> int:
    removed = 0
    for path in sorted(root.rglob("*"), reverse=True):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in kept:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed


def _reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def fetch(source: str | Path, settings: Settings) -> Path:
    """A local path for `source`: a local path as is; an s3:// object downloaded (again only when it changed)
    under `<data_dir>/cache/s3/`. `SourceError` when it cannot be read."""
    if not is_remote(source):
        return Path(source)
    from pyarrow import fs

    uri = str(source)
    key = uri.removeprefix("s3://")
    filesystem = _s3(settings)
    try:
        info = filesystem.get_file_info(key)
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {uri}: {_reason(exc)}") from None
    if info.type != fs.FileType.File:
        raise SourceError(f"no object at {uri}")
    local = settings.data_dir / "cache" / "s3" / key
    if not _same(local, info):
        _download(filesystem, info, local)
    return local


def exists(target: str, settings: Settings) -> bool:
    from pyarrow import fs

    try:
        return _s3(settings).get_file_info(target.removeprefix("s3://")).type == fs.FileType.File
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {target}: {_reason(exc)}") from None


def publish(local: Path, target: str, settings: Settings) -> None:
    """Upload a finished local file to an s3:// URI."""
    filesystem = _s3(settings)
    try:
        with local.open("rb") as source, filesystem.open_output_stream(target.removeprefix("s3://")) as sink:
            while chunk := source.read(_COPY_BUFFER_BYTES):
                sink.write(chunk)
    except OSError as exc:
        raise SourceError(f"cannot write {target}: {_reason(exc)}") from None


def local_target(target: str | Path, settings: Settings) -> Path:
    """Where to write what goes to `target`: itself when local; for an s3:// URI a cached copy (holding the
    object's current content, so a resumable writer continues it), to `publish` when done."""
    if not is_remote(target):
        return Path(target)
    uri = str(target)
    if exists(uri, settings):
        return fetch(uri, settings)
    local = settings.data_dir / "cache" / "s3" / uri.removeprefix("s3://")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.unlink(missing_ok=True)
    return local
