"""Data files docent reads (eval sets, references, responses, training pairs): JSON arrays or JSON lines."""

from __future__ import annotations

import hashlib
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


HELD_OUT_EVERY = 10  # one question in ten of a synthetic set is held out from fine-tuning and used to choose


def held_out(question: str) -> bool:
    """Fixed per question, whatever the file's order: True for the held-out tenth.

    Fine-tuning leaves these questions (and so their sections) out, and retrieval
    settings are chosen by scores on them, never on the set reported against the reference.
    """
    return int(hashlib.sha256(question.strip().encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0
