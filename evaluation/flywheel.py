"""The data flywheel: the gateway's answer log and its feedback turned into work to do.

Every answer the gateway gives is a row of `answers`; votes on it are rows of `feedback`
(docent/migrations/0004_keys_answers_feedback.sql). An answer has problems of four kinds:

- `down_vote`: someone voted it down (counted per vote);
- `no_sources`: nothing was retrieved (no sources, so no top_score);
- `fallback`: the chosen LLM failed (non-empty `fallbacks`), or the answer is extractive
  although the route chose an LLM;
- `low_score`: its top_score, the best cosine similarity of the question and one of its
  sources (as the gateway logs it, whatever the retrieval mode), is below
  `flywheel.low_score`. An answer whose sources were all found by BM25 alone has no
  similarity (top_score NULL): that is no problem by itself.

Answers whose questions are the same once normalised (case, punctuation and spacing
aside) are merged into one question with counts; its score, to sort by, is the sum over
its answers of each problem's weight (`PROBLEM_WEIGHTS`: a down-vote weighs most). A
question's docs area is the first path segment of its best source (the most similar one;
the top-ranked one when none has a similarity) under the docs' base URL
(`rerank.base_url`), as the reranker's tags are, but any segment counts, not only the Ray
docs' areas; "other" when there is no source, the source is elsewhere, or the page sits
at the top of the docs.

Nothing here prints or exits: `docent flywheel` (cli/flywheel.py) does.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.markup import escape
from rich.table import Column, Table

from docent.answers import AnswerStore
from docent.errors import UsageError
from docent.text import normalise_question
from docent.types import EXTRACTIVE_LLM

DOWN_VOTE, NO_SOURCES, FALLBACK, LOW_SCORE = "down_vote", "no_sources", "fallback", "low_score"
# A person saying the answer is wrong is the surest signal; an answer with nothing behind
# it next; a failing LLM is an operations problem more than a content one; a low score is
# only a hint (a good answer can come from a modestly scored source).
PROBLEM_WEIGHTS = {DOWN_VOTE: 5, NO_SOURCES: 3, FALLBACK: 2, LOW_SCORE: 1}
PROBLEM_KINDS = tuple(PROBLEM_WEIGHTS)  # heaviest first: the order problems are listed in
PROBLEM_LABELS = {DOWN_VOTE: "down-voted", NO_SOURCES: "no sources", FALLBACK: "fallback", LOW_SCORE: "low score"}
OTHER_AREA = "other"
_TERMINAL_LABELS = {DOWN_VOTE: "down votes"}  # a header that wraps: the summary fits 80 columns

REPORT_MARKDOWN = "flywheel.md"
REPORT_CSV = "flywheel.csv"
ANSWER_EXCERPT_CHARS = 400  # enough to see what the answer said, short enough to skim a page of them
BM25_ONLY = "bm25"  # in the CSV, the similarity of a source that BM25 alone found: it has none
# An exported question has no known gold source: the eval set format's way of saying so is an empty `source`.
UNKNOWN_GOLD = ""

_AGE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$", re.IGNORECASE)
_AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
# Spreadsheets run a cell starting with one of these as a formula; questions come from the public.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!~])")


class FlywheelError(UsageError, ValueError):
    """A bad input of `docent flywheel` (a date, an output path); the message says what to give instead."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2026-01-31` (midnight UTC), an ISO 8601 time (UTC unless it has an offset), or an age: `12h`, `7d`, `2w`."""
    now = now or datetime.now(UTC)
    if match := _AGE.match(text):
        return now - timedelta(**{_AGE_UNITS[match[2].lower()]: int(match[1])})
    try:
        if re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", text):
            parsed = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FlywheelError(
            f"--since {text!r} is not a date: give YYYY-MM-DD, an ISO 8601 time like 2026-01-31T09:00 "
            "(UTC unless it has an offset), or an age like 12h, 7d or 2w"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def docs_area(source: str | None, base_url: str | None) -> str:
    """The first path segment of `source` under `base_url` (default: its site's root); "other" outside it,
    at its top, or without a source."""
    if source and not base_url:
        parts = urlsplit(source)
        base_url = f"{parts.scheme}://{parts.netloc}/" if parts.netloc else ""
    if not source or not base_url or not source.startswith(base_url):
        return OTHER_AREA
    path = source[len(base_url):].split("#", 1)[0].lstrip("/")
    first, slash, _ = path.partition("/")
    return first if slash and first else OTHER_AREA


@dataclass(frozen=True)
class LoggedSource:
    number: int
    source: str
    title: str
    score: float | None  # the retriever's ranking score: its scale is the retrieval mode's (a fused rank in hybrid)
    similarity: float | None = None  # cosine similarity of question and chunk; None: found by BM25 only


@dataclass(frozen=True)
class LoggedAnswer:
    """One row of `answers` with the votes on it."""

    id: str
    created_at: datetime
    question: str
    index: str
    answer: str
    sources: tuple[LoggedSource, ...]
    top_score: float | None  # the best source's similarity; None without sources or when BM25 alone found them
    llm: str
    route_llm: str | None
    fallbacks: tuple[tuple[str, str], ...]  # (LLM that failed, why)
    down_votes: int = 0
    up_votes: int = 0
    comments: tuple[str, ...] = ()  # of the down-votes

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LoggedAnswer:
        route = _json(row["route"]) or {}
        return cls(
            id=row["id"],
            created_at=row["created_at"],
            question=row["question"].strip(),
            index=row["index_name"],
            answer=row["answer"],
            sources=tuple(_source(s, n) for n, s in enumerate(_json(row["sources"]) or [], start=1)),
            top_score=row["top_score"],
            llm=row["llm"],
            route_llm=route.get("llm") if isinstance(route, dict) else None,
            fallbacks=tuple(_fallback(f) for f in _json(row["fallbacks"]) or []),
            down_votes=row["down_votes"],
            up_votes=row["up_votes"],
            comments=tuple(row["comments"] or ()),
        )

    @property
    def best_source(self) -> LoggedSource | None:
        """The most similar source (the one top_score comes from; the first of equals), else the first listed
        (the pipeline's top rank); None without sources."""
        similar = [s for s in self.sources if s.similarity is not None]
        if similar:
            return max(similar, key=lambda s: s.similarity)  # max keeps the first of equals
        return self.sources[0] if self.sources else None

    def problems(self, low_score: float) -> dict[str, int]:
        """Problem kind → how many times this answer has it (down-votes: one per vote; the others: 1)."""
        found: dict[str, int] = {}
        if self.down_votes:
            found[DOWN_VOTE] = self.down_votes
        if not self.sources:
            found[NO_SOURCES] = 1
        elif self.top_score is not None and self.top_score < low_score:
            found[LOW_SCORE] = 1
        if self.fallbacks or (self.llm == EXTRACTIVE_LLM and self.route_llm != EXTRACTIVE_LLM):
            found[FALLBACK] = 1
        return found


def _json(value: Any) -> Any:
    """asyncpg hands jsonb over as text unless a codec is set; accept both."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _source(value: Any, position: int) -> LoggedSource:
    if not isinstance(value, dict):
        return LoggedSource(position, str(value), "", None)
    number = value.get("number")
    return LoggedSource(number if isinstance(number, int) else position, str(value.get("source") or ""),
                        str(value.get("title") or ""), _number(value.get("score")), _number(value.get("similarity")))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fallback(value: Any) -> tuple[str, str]:
    if isinstance(value, dict):
        return str(value.get("llm") or "?"), str(value.get("reason") or "")
    return str(value), ""


@dataclass
class Asked:
    """How often a question was answered in the period, problems or not, and the up-votes on those answers."""

    answers: int = 0
    up_votes: int = 0


async def fetch_problem_answers(
    store: AnswerStore, since: datetime | None, low_score: float, down_voted_only: bool = False
) -> list[LoggedAnswer]:
    """The answers given since `since` (all without it) with a problem, or only the down-voted ones; oldest first."""
    rows = await store.problem_answers(since, low_score, down_voted_only, EXTRACTIVE_LLM)
    return [LoggedAnswer.from_row(row) for row in rows]


async def fetch_asked(store: AnswerStore, since: datetime | None) -> dict[str, Asked]:
    """Normalised question → its answers since `since` (all without it), with or without problems."""
    asked: dict[str, Asked] = defaultdict(Asked)
    for row in await store.questions_asked(since):
        entry = asked[normalise_question(row["question"])]
        entry.answers += row["answers"]
        entry.up_votes += row["up_votes"]
    return dict(asked)


@dataclass
class Question:
    """One question (merged over its normalised forms) and its answers that have problems."""

    key: str
    question: str  # the form asked most often (the latest of equals)
    answers: list[LoggedAnswer]  # oldest first
    asked: int  # every answer in the period, problems or not
    up_votes: int  # on all those answers
    area: str
    problems: dict[str, int]  # kind → down-votes, or answers with it
    score: int

    @property
    def latest(self) -> LoggedAnswer:
        return self.answers[-1]

    @property
    def down_votes(self) -> int:
        return sum(a.down_votes for a in self.answers)

    @property
    def comments(self) -> list[str]:
        return [c for a in self.answers for c in a.comments]

    @property
    def first_asked(self) -> datetime:
        return self.answers[0].created_at

    @property
    def last_asked(self) -> datetime:
        return self.latest.created_at

    def problem_list(self) -> list[str]:
        """`down-voted ×2`, … heaviest first."""
        return [f"{PROBLEM_LABELS[k]} ×{self.problems[k]}" for k in PROBLEM_KINDS if k in self.problems]


def group_questions(
    answers: Iterable[LoggedAnswer], asked: Mapping[str, Asked], low_score: float, base_url: str | None
) -> list[Question]:
    """Answers with problems merged by normalised question, worst first.

    Worst: highest score, then more down-votes, then asked more often, then asked more recently.
    """
    by_key: dict[str, list[LoggedAnswer]] = defaultdict(list)
    for answer in sorted(answers, key=lambda a: (a.created_at, a.id)):
        if answer.problems(low_score):
            by_key[normalise_question(answer.question)].append(answer)
    questions = [_question(key, group, asked.get(key, Asked()), low_score, base_url) for key, group in by_key.items()]
    questions.sort(key=lambda q: (-q.score, -q.down_votes, -q.asked, -q.last_asked.timestamp(), q.question))
    return questions


def _question(key: str, answers: list[LoggedAnswer], asked: Asked, low_score: float, base_url: str | None) -> Question:
    problems: Counter[str] = Counter()
    for answer in answers:
        problems.update(answer.problems(low_score))
    forms = Counter(a.question for a in answers)
    latest_position = {a.question: i for i, a in enumerate(answers)}
    text = max(forms, key=lambda form: (forms[form], latest_position[form]))
    with_sources = [a for a in answers if a.best_source is not None]
    area = docs_area(with_sources[-1].best_source.source, base_url) if with_sources else OTHER_AREA
    score = sum(PROBLEM_WEIGHTS[kind] * count for kind, count in problems.items())
    # An answer logged between the two queries may be missing from `asked`: never show fewer than are listed.
    answered = max(asked.answers, len(answers))
    up_votes = max(asked.up_votes, sum(a.up_votes for a in answers))
    return Question(key, text, answers, answered, up_votes, area, dict(problems), score)


@dataclass
class FlywheelReport:
    since: datetime | None
    low_score: float
    base_url: str | None
    answers: int  # every answer logged in the period
    questions: list[Question]  # every question with a problem, worst first
    limit: int
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def listed(self) -> list[Question]:
        return self.questions[: self.limit]

    def area_counts(self) -> dict[str, dict[str, int]]:
        """Area → questions, asked, score and questions with each problem kind; worst area (highest score) first."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for q in self.questions:
            counts[q.area].update({"questions": 1, "asked": q.asked, "score": q.score, **dict.fromkeys(q.problems, 1)})
        ordered = sorted(counts.items(), key=lambda item: (-item[1]["score"], item[0]))
        return {area: {k: c[k] for k in ("questions", "asked", *PROBLEM_KINDS, "score")} for area, c in ordered}

    def kind_counts(self) -> dict[str, int]:
        """Problem kind → questions that have it."""
        return {kind: sum(kind in q.problems for q in self.questions) for kind in PROBLEM_KINDS}

    def summary(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "answers": self.answers,
            "questions": len(self.questions),
            "listed": len(self.listed),
            "low_score": self.low_score,
            "kinds": self.kind_counts(),
            "areas": self.area_counts(),
        }


def period(since: datetime | None) -> str:
    return f"since {_when(since)}" if since else "in the whole log"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def summary_table(report: FlywheelReport) -> Table:
    """Questions per docs area (worst first) and problem kind: a question counts once per kind it has."""
    keys = ("questions", "asked", *PROBLEM_KINDS)
    labels = ("questions", "asked", *(_TERMINAL_LABELS.get(k, PROBLEM_LABELS[k]) for k in PROBLEM_KINDS))
    table = Table(
        Column("area", no_wrap=True), *(Column(label, justify="right") for label in labels),
        title=f"flywheel · {len(report.questions)} questions with problems of {report.answers} answers "
        f"{period(report.since)}", title_justify="left",
        caption="areas worst first; cells count questions, asked counts their answers", caption_justify="left",
    )
    areas = report.area_counts()
    for area, counts in areas.items():
        table.add_row(escape(area), *(str(counts[k]) for k in keys))
    table.add_section()
    table.add_row("all", *(str(sum(c[k] for c in areas.values())) for k in keys), style="bold")
    return table


def _md(text: str) -> str:
    """User text (questions, answers, comments) inline in Markdown: one line, no markup of its own."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _md_link(title: str, url: str) -> str:
    target = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")
    return f"[{_md(title or url)}]({target})"


def _excerpt(text: str, limit: int = ANSWER_EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _similarity(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _score(value: float | None) -> str:
    """A ranking score: its scale depends on the retrieval mode (a fused rank score is about 0.016–0.033)."""
    return "–" if value is None else f"{value:.4g}"


def _top_score(answer: LoggedAnswer) -> str:
    if answer.top_score is None and answer.sources:
        return "– (every source was found by BM25 alone: no similarity)"
    return _similarity(answer.top_score)


def render_markdown(report: FlywheelReport) -> str:
    lines = [
        "# Flywheel report",
        "",
        f"Generated {_when(report.generated_at)} from the answers logged {period(report.since)}: "
        f"{report.answers} answers, {len(report.questions)} distinct questions with a problem"
        + (f", the worst {len(report.listed)} listed below." if report.listed else "."),
        "",
        (f"Problems: **down-voted** (weight {PROBLEM_WEIGHTS[DOWN_VOTE]} per vote), **no sources** (weight "
        f"{PROBLEM_WEIGHTS[NO_SOURCES]}), **fallback**: the chosen LLM failed or the answer is extractive though an "
        f"LLM was chosen (weight {PROBLEM_WEIGHTS[FALLBACK]}), **low score**: top_score, the best cosine similarity "
        f"of the question and a source, below {report.low_score} (weight {PROBLEM_WEIGHTS[LOW_SCORE]}); a question's "
        f"score sums them over its answers. Docs areas are the first path segment of the most similar source under "
        f"{report.base_url or 'its site root'}. Each source is shown with its similarity (– when BM25 alone found it: no similarity) "
        "and the retriever's ranking score (on the retrieval mode's scale: a fused rank score in hybrid mode). "
        "See docs/flywheel.md for what to do about each."),
        "",
    ]
    if not report.questions:
        lines += ["No answer in this period has a problem.", ""]
        return "\n".join(lines)
    lines += ["## Summary", "", "| area | questions | asked | " + " | ".join(PROBLEM_LABELS[k] for k in PROBLEM_KINDS)
              + " | score |", "| --- |" + " ---: |" * (len(PROBLEM_KINDS) + 3)]
    for area, counts in report.area_counts().items():
        cells = [str(counts[k]) for k in ("questions", "asked", *PROBLEM_KINDS, "score")]
        lines.append(f"| {_md(area)} | " + " | ".join(cells) + " |")
    lines.append("")
    ranks = {id(q): rank for rank, q in enumerate(report.listed, start=1)}
    by_area: dict[str, list[Question]] = defaultdict(list)
    for q in report.listed:
        by_area[q.area].append(q)
    for area in (a for a in report.area_counts() if a in by_area):
        shown = by_area[area]
        lines += [f"## {_md(area)} ({len(shown)} question{'s' if len(shown) != 1 else ''})", ""]
        for q in shown:
            lines += _question_markdown(ranks[id(q)], q)
    return "\n".join(lines)


def _question_markdown(rank: int, q: Question) -> list[str]:
    latest = q.latest
    route = f"; the route chose {_md(latest.route_llm)}" if latest.route_llm and latest.route_llm != latest.llm else ""
    failed = "".join(f"; {_md(llm)} failed: {_md(reason)}" for llm, reason in latest.fallbacks)
    lines = [
        f"### {rank}. {_md(q.question)}",
        "",
        f"- score {q.score}: {', '.join(q.problem_list())}",
        (f"- asked {q.asked} time{'s' if q.asked != 1 else ''} ({len(q.answers)} with a problem), first "
        f"{_when(q.first_asked)}, last {_when(q.last_asked)}; votes: {q.down_votes} down, {q.up_votes} up"),
    ]
    lines += [f"- comment: {_md(comment)}" for comment in q.comments]
    lines += [
        (f"- latest answer with a problem: `{latest.id}`, index {_md(latest.index)}, answered by {_md(latest.llm)}"
        f"{route}{failed}; top_score {_top_score(latest)}"),
        "",
        f"  > {_md(_excerpt(latest.answer)) or '(empty)'}",
        "",
    ]
    if latest.sources:
        lines.append("  Its sources:")
        lines.append("")
        lines += [f"  {s.number}. {_md_link(s.title, s.source)} · similarity {_similarity(s.similarity)} · "
                  f"score {_score(s.score)}" for s in latest.sources]
    else:
        lines.append("  No sources were retrieved.")
    lines.append("")
    return lines


CSV_COLUMNS = (
    "rank", "area", "score", "problems", "question", "asked", "answers_with_problems", "down_votes", "up_votes",
    *(f"{kind}_count" for kind in PROBLEM_KINDS), "top_score", "lowest_top_score", "llm", "route_llm", "fallbacks",
    "index", "best_source", "sources", "source_similarities", "comments", "first_asked", "last_asked", "answer_ids",
)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_similarity(value: float | None) -> str:
    return BM25_ONLY if value is None else f"{value:.3f}"


def render_csv(report: FlywheelReport) -> str:
    """One row per listed question, worst first; list cells are joined with ` | `."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, q in enumerate(report.listed, start=1):
        latest, scores = q.latest, [a.top_score for a in q.answers if a.top_score is not None]
        best = latest.best_source
        row = [
            rank, q.area, q.score, "; ".join(q.problem_list()), q.question, q.asked, len(q.answers), q.down_votes,
            q.up_votes, *(q.problems.get(kind, 0) for kind in PROBLEM_KINDS), latest.top_score,
            min(scores) if scores else None, latest.llm, latest.route_llm,
            " | ".join(f"{llm}: {reason}" for llm, reason in latest.fallbacks), latest.index,
            best.source if best else None, " | ".join(s.source for s in latest.sources),
            " | ".join(_csv_similarity(s.similarity) for s in latest.sources), " | ".join(q.comments),
            q.first_asked.isoformat(), q.last_asked.isoformat(), " ".join(a.id for a in q.answers),
        ]
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def prepare_directory(out_dir: Path) -> None:
    """Create `out_dir` and make sure files can be written in it, before any work is done."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlywheelError(f"cannot create the report folder {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise FlywheelError(f"cannot write in the report folder {out_dir}: permission denied")


def write_report(report: FlywheelReport, out_dir: Path) -> list[Path]:
    """`flywheel.md` and `flywheel.csv` in `out_dir`, each replaced whole."""
    prepare_directory(out_dir)
    written = []
    for name, text in ((REPORT_MARKDOWN, render_markdown(report)), (REPORT_CSV, render_csv(report))):
        written.append(write_text(out_dir / name, text))
    return written


def write_text(path: Path, text: str) -> Path:
    """Write beside `path`, then move into place: a failed write leaves any earlier file as it was."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise FlywheelError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_writable_file(path: Path) -> None:
    """Fail before any work when `path` cannot be written: a folder, or a parent that is missing or read-only."""
    if path.is_dir():
        raise FlywheelError(f"--out {path} is a folder: give a file name, e.g. {path / 'flywheel-eval.jsonl'}")
    parent = path.parent
    if not parent.is_dir():
        raise FlywheelError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FlywheelError(f"cannot write {path}: permission denied")


def eval_rows(questions: Sequence[Question]) -> list[dict[str, Any]]:
    """An eval set of down-voted questions: `docent eval run --eval` rows, most down-voted first.

    The gold source of these questions is unknown: `source` is empty, which `docent eval run`
    reads as no gold (no retrieval scores, left out of the retrieval means). The sources the down-voted answer was given
    are kept under `flywheel.retrieved_sources`, unverified: a person who finds the right section
    puts its URL in `source`. No `answer` is written: a down-voted answer is no reference.
    """
    voted = sorted((q for q in questions if q.down_votes), key=lambda q: (-q.down_votes, -q.score, q.question))
    rows = []
    for q in voted:
        down_voted = [a for a in q.answers if a.down_votes]
        latest = down_voted[-1]
        rows.append({
            "question": q.question,
            "source": UNKNOWN_GOLD,
            "flywheel": {
                "gold": "unknown",
                "down_votes": q.down_votes,
                "up_votes": q.up_votes,
                "asked": q.asked,
                "area": q.area,
                "comments": q.comments,
                "answer_ids": [a.id for a in down_voted],
                "last_down_voted_answer": {"llm": latest.llm, "top_score": latest.top_score},
                "retrieved_sources": [s.source for s in latest.sources],  # unverified: what the answer was given
                "last_asked": q.last_asked.isoformat(),
            },
        })
    return rows


def render_eval_set(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
