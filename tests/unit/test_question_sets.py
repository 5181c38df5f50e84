"""The hand-written question sets hold what they claim: each answer is where its row says, in the corpus."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from docent.datasets import held_out
from tests.conftest import ROOT, SHARED, require

USER_QUESTIONS = ROOT / "evaluation" / "datasets" / "user-questions.jsonl"
# Real users' questions (routing-dataset-train.jsonl), each labelled with the page that answers it.
REAL_QUESTIONS = ROOT / "evaluation" / "datasets" / "real-questions.jsonl"
ROUTING_SET = SHARED / "datasets" / "routing-dataset-train.jsonl"
EVAL_SET = SHARED / "datasets" / "eval-dataset-v1.jsonl"
CORPUS = SHARED / "corpora" / "ray-docs-2.7"
SITE = "https://docs.ray.io/en/master/"
MARKUP = re.compile(r"[`*\\]|:[\w:-]+:|\{[\w:-]+\}|<[^>\n]*>|~(?:\w+\.)+")  # ~ray.data.read_sql shows as read_sql


def _plain(text: str) -> str:
    """Words only: roles, links and emphasis of reST/MyST removed, whitespace and case folded."""
    return re.sub(r"\s+", " ", MARKUP.sub("", text.replace("’", "'"))).strip().lower()


def _page_text(page: str) -> str | None:
    base = CORPUS / page.removesuffix(".html")
    for suffix in (".rst", ".md", ".ipynb"):
        path = base.with_name(base.name + suffix)
        if path.exists():
            if suffix == ".ipynb":
                return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
            return path.read_text()
    return None


def _rows(path=USER_QUESTIONS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_user_questions_are_unique_spread_over_pages_and_name_their_section():
    rows = _rows()
    assert len(rows) >= 100
    assert all(set(row) == {"question", "source", "why"} for row in rows)
    assert len({row["question"].strip().lower() for row in rows}) == len(rows)
    assert max(Counter(row["source"].split("#")[0] for row in rows).values()) <= 2
    assert all(row["source"].startswith(SITE) and "#" in row["source"] for row in rows)


@pytest.mark.parametrize("path", [USER_QUESTIONS, REAL_QUESTIONS], ids=["user", "real"])
def test_each_question_quotes_its_page(path):
    require(CORPUS.is_dir(), f"the Ray docs corpus at {CORPUS}")
    missing = []
    for row in _rows(path):
        text = _page_text(row["source"].removeprefix(SITE).split("#")[0])
        quote = _plain(row["why"])[:40]
        if text is None or quote not in _plain(text):
            missing.append(row["source"])
    assert not missing, f"quotes not found on their pages: {missing}"


def test_real_questions_are_real_users_and_not_the_eval_sets():
    require(ROUTING_SET.is_file() and EVAL_SET.is_file(), f"the datasets under {SHARED / 'datasets'}")
    rows = _rows(REAL_QUESTIONS)
    assert len(rows) >= 150
    assert all(set(row) == {"question", "source", "why"} for row in rows)
    asked = {json.loads(line)["question"].strip() for line in ROUTING_SET.read_text().splitlines() if line.strip()}
    evaluated = {json.loads(line)["question"].strip().lower() for line in EVAL_SET.read_text().splitlines() if line.strip()}
    assert all(row["question"] in asked for row in rows)
    assert not any(row["question"].lower() in evaluated for row in rows)
    assert len({row["question"].lower() for row in rows}) == len(rows)
    assert all(row["source"].startswith(SITE) and "#" in row["source"] for row in rows)


def test_the_held_out_tenth_is_fixed_per_question_and_ignores_surrounding_space():
    assert all(held_out(f"question {i}") == held_out(f"  question {i}\n") for i in range(50))
    assert abs(sum(held_out(f"question {i}") for i in range(2000)) - 200) < 40
