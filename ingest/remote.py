"""Docs trees in object storage: an `s3://bucket/prefix` source is mirrored under the data dir, then ingested like a folder.

The mirror lives under `<data_dir>/corpora/s3/<bucket>/<prefix>`. The driver lists the
prefix and compares each object's size and modification time with its mirrored copy; only
new and changed objects are read, by a Ray Data job (one GET per object, in parallel tasks),
and the driver writes them into the mirror; copies of objects gone from the bucket are
removed (so `--prune` works as for a folder). The ingest then hashes the mirror's files as
usual, so an unchanged object is neither downloaded nor re-embedded, and a page's URL (and
its anchors) comes from its key under the prefix exactly as from a path under a folder.
The connection and single files are `docent/uris.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from docent.errors import IngestError, SourceError
from docent.settings import Settings
from docent.uris import RemoteObject, bucket_path, s3_filesystem, storage_failure, unchanged_copy, write_copy
from ingest.progress import IngestProgress

# Ray Data read tasks for a sync: enough to keep a cluster's CPUs busy with GETs, few enough that
# a small change is not split into tasks costing more than the objects they read.
_MAX_READ_BLOCKS = 64
_NO_ERROR = ""


@dataclass(frozen=True)
class MirrorReport:
    root: Path
    downloaded: int
    unchanged: int
    removed: int


# ── docs trees: the mirror ──────────────────────────────────────────────────────────────


def mirror_root(uri: str, settings: Settings) -> Path:
    return settings.data_dir / "corpora" / "s3" / bucket_path(uri)


def mirror(uri: str, settings: Settings, progress: IngestProgress | None = None) -> MirrorReport:
    """Bring the local mirror of `uri` in step with the bucket; `SourceError` when it cannot be read.

    Reading changed objects starts Ray (when not yet connected): call it from the main thread."""
    filesystem = s3_filesystem(settings)
    objects = _list(uri, filesystem, settings)
    root = mirror_root(uri, settings)
    changed = [obj for relative, obj in sorted(objects.items()) if not unchanged_copy(root / relative, obj)]
    if progress is not None:
        progress.stage("download", len(changed))
    prefix = bucket_path(uri) + "/"
    for obj, data in read_objects(changed, filesystem, settings):
        write_copy(root / obj.path.removeprefix(prefix), data, obj.mtime)
        if progress is not None:
            progress.advance("download")
    removed = remove_gone(root, set(objects))
    return MirrorReport(root, len(changed), len(objects) - len(changed), removed)


def _list(uri: str, filesystem, settings: Settings) -> dict[str, RemoteObject]:
    """Relative key → object, for every object under the prefix (none there: `SourceError`)."""
    from pyarrow import fs

    remote_root = bucket_path(uri)
    try:
        listing = filesystem.get_file_info(fs.FileSelector(remote_root, recursive=True))
    except FileNotFoundError:
        listing = []
    except (OSError, ValueError) as exc:
        raise storage_failure("list", uri, exc, settings) from None
    objects = {}
    for info in listing:
        relative = info.path[len(remote_root) + 1:]
        if info.type == fs.FileType.File and ".." not in PurePosixPath(relative).parts:
            objects[relative] = RemoteObject(info.path, info.size, info.mtime.timestamp())
    if not objects:
        raise SourceError(f"no objects under {uri}: check the bucket and prefix")
    return objects


def read_objects(objects: list[RemoteObject], filesystem, settings: Settings) -> Iterator[tuple[RemoteObject, bytes]]:
    """Each object with its content, read by Ray Data tasks in parallel; an object deleted meanwhile is left out.

    The listing already holds what the sync needs (size, time), so the tasks do one GET per
    object: `ray.data.read_binary_files` would first fetch every object's metadata again."""
    if not objects:
        return
    import ray
    from ray.exceptions import RayError

    from docent.ray_runtime import ensure_ray

    ensure_ray(settings)
    by_path = {obj.path: obj for obj in objects}
    keys = ray.data.from_items([{"path": obj.path} for obj in objects],
                               override_num_blocks=min(len(objects), _MAX_READ_BLOCKS))
    contents = keys.map_batches(_read_batch, fn_kwargs={"filesystem": filesystem}, batch_size=None,
                                batch_format="numpy")
    try:
        for batch in contents.iter_batches(batch_size=None, batch_format="numpy"):
            for path, data, error in zip(batch["path"], batch["data"], batch["error"]):
                if error:
                    raise storage_failure("download", f"s3://{path}", OSError(str(error)), settings)
                if data is not None:
                    yield by_path[str(path)], bytes(data)
    except RayError as exc:  # objects written before the failure stay: the next sync reads only the rest
        innermost = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise IngestError(f"reading from object storage failed in Ray: {innermost[-1]}") from exc


def _read_batch(batch: dict[str, np.ndarray], filesystem) -> dict[str, np.ndarray]:
    """Ray Data task: read a block of objects. Failures travel as text, so the driver reports them plainly."""
    contents, errors = [], []
    for path in batch["path"]:
        try:
            with filesystem.open_input_stream(str(path)) as source:
                contents.append(source.read())
            errors.append(_NO_ERROR)
        except FileNotFoundError:  # deleted since the listing: the next sync removes its copy
            contents.append(None)
            errors.append(_NO_ERROR)
        except OSError as exc:
            contents.append(None)
            errors.append(str(exc))
    return {"path": batch["path"], "data": np.array(contents, dtype=object), "error": np.array(errors, dtype=object)}


def remove_gone(root: Path, kept: set[str]) -> int:
    """Delete the mirror's files not in `kept` (paths relative to `root`) and the folders left empty."""
    removed = 0
    for path in sorted(root.rglob("*"), reverse=True):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in kept:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed
