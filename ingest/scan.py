"""Which files an ingest reads, and which of them changed since the last run."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from docent.errors import SourceError
from ingest.loaders import SUPPORTED_SUFFIXES


@dataclass
class SourceFile:
    uri: str  # posix path relative to the ingested root: the document's identity in an index
    path: Path
    content_hash: str


@dataclass
class Scan:
    root: Path
    files: list[SourceFile] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # uri -> reason
    unsupported: int = 0
    excluded: int = 0


def scan(path: Path, exclude: list[str]) -> Scan:
    """The supported files under `path` (or `path` itself), hashed, minus the excluded ones."""
    path = path.expanduser()
    if not path.exists():
        raise SourceError(f"no such file or directory: {path}")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise SourceError(f"permission denied: {path}")
    if path.is_file():
        result = Scan(root=path.parent.resolve())
        _add(result, path.resolve(), exclude=[])
        return result
    result = Scan(root=path.resolve())
    for dirpath, dirnames, filenames in os.walk(result.root):
        dirnames.sort()
        for name in sorted(filenames):
            _add(result, Path(dirpath, name), exclude)
    return result


def _add(result: Scan, file: Path, exclude: list[str]) -> None:
    uri = file.relative_to(result.root).as_posix()
    if is_excluded(uri, exclude):
        result.excluded += 1
    elif file.suffix.lower() not in SUPPORTED_SUFFIXES:
        result.unsupported += 1
    else:
        try:
            result.files.append(SourceFile(uri, file, file_hash(file.read_bytes())))
        except OSError as exc:
            result.unreadable[uri] = f"cannot read: {exc.strerror or exc}"


def is_excluded(uri: str, patterns: list[str]) -> bool:
    # fnmatch's `*` crosses `/`; a leading `**/` also matches at the root.
    return any(fnmatch.fnmatch(uri, p) or (p.startswith("**/") and fnmatch.fnmatch(uri, p[3:])) for p in patterns)


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
