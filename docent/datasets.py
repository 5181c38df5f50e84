"""Data files docent reads (eval sets, references, responses, training pairs): JSON arrays or JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docent.errors import DataFileError


class EvalSetError(DataFileError):
    """An eval set (or references, or responses) file that is missing or malformed."""


def read_json_rows(path: Path, what: str = "eval set") -> list[tuple[str, Any]]:
    """The rows of a JSON array or JSON-lines file, each with where it is (`line 3`, or `row 3` of an array)."""
    if not path.is_file():
        raise EvalSetError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if text.lstrip().startswith("["):
        try:
            return [(f"row {number}", row) for number, row in enumerate(json.loads(text), start=1)]
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}: not a valid JSON array ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
    return rows
