"""`docent flywheel report | export`: the gateway's answer log and feedback turned into work to do.

Registered as `docent flywheel` by cli.main; the work is in evaluation/flywheel.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.support import clear_errors, cli_settings, console
from docent.settings import Settings

flywheel_app = typer.Typer(
    help="Learn from the answers the gateway gave: the worst questions by docs area; down-voted ones as an eval set.",
    no_args_is_help=True,
)

DEFAULT_REPORT_DIR = Path("flywheel-report")

SinceOption = Annotated[
    str | None,
    typer.Option(help="only answers given since then: YYYY-MM-DD, an ISO 8601 time (UTC unless it has an offset), "
                 "or an age like 12h, 7d, 2w (default: the whole log)"),
]


def _since(text: str | None) -> datetime | None:
    from evaluation.flywheel import parse_since

    return parse_since(text) if text is not None else None


@flywheel_app.command("report")
def report(
    since: SinceOption = None,
    out: Annotated[
        Path, typer.Option(help="folder the report is written to: flywheel.md and flywheel.csv")
    ] = DEFAULT_REPORT_DIR,
    limit: Annotated[
        int | None, typer.Option(min=1, help="worst questions listed in the files (default: flywheel.report_limit)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """The worst questions of the answer log, grouped by docs area, each with its problems and the sources its answer was given.

    Problems: down-votes (weigh most), no sources, fallbacks (the chosen LLM failed, or an extractive answer though an LLM was chosen), and a top_score (the best cosine similarity of question and source) below flywheel.low_score; sources found by BM25 alone have no similarity and are no problem by themselves. Identical questions (case, punctuation and spacing aside) are merged with counts. The summary counts every question with a problem; the files list the worst --limit.
    """
    from evaluation.flywheel import FlywheelReport, prepare_directory, summary_table, write_report

    with clear_errors("interrupted; nothing was written"):
        settings = cli_settings(flywheel={"report_limit": limit})
        moment = _since(since)
        prepare_directory(out)
        answers, questions = asyncio.run(_problem_questions(settings, moment, down_voted_only=False))
        found = FlywheelReport(moment, settings.flywheel.low_score, settings.rerank.base_url, answers, questions,
                               settings.flywheel.report_limit)
        written = write_report(found, out)
    if as_json:
        print(json.dumps(found.summary() | {"files": [str(p) for p in written]}))
        return
    if not answers:
        console.print(f"no answers logged {_period(moment)}: nothing to report", markup=False)
        return
    if not questions:
        console.print(f"none of the {answers} answers logged {_period(moment)} has a problem", markup=False)
        return
    console.print(summary_table(found))
    console.print(f"listed the worst {len(found.listed)} of {len(questions)} questions in "
                  + " and ".join(str(p) for p in written), markup=False, highlight=False)


@flywheel_app.command("export")
def export(
    out: Annotated[str, typer.Option(help="eval set written (JSON lines), a path or s3:// URI")],
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Write the down-voted questions as an eval set for `docent eval run --eval FILE`, most down-voted first.

    Each row is {question, source, flywheel}: the gold source of these questions is unknown, so `source` is empty, and `flywheel` holds the votes, comments, answer ids and the sources the down-voted answer was given (unverified). Put the right section's URL in `source` to score retrieval on a question. See docs/flywheel.md.
    """
    from docent.uris import is_remote, local_target, publish
    from evaluation.flywheel import check_writable_file, eval_rows, render_eval_set, write_text

    with clear_errors("interrupted; nothing was written"):
        settings = cli_settings()
        moment = _since(since)
        if not is_remote(out):
            check_writable_file(Path(out))
        _, questions = asyncio.run(_problem_questions(settings, moment, down_voted_only=True))
        rows = eval_rows(questions)
        if rows:
            written = local_target(out, settings)
            write_text(written, render_eval_set(rows))
            if is_remote(out):
                publish(written, out, settings)
    votes = sum(r["flywheel"]["down_votes"] for r in rows)
    if as_json:
        print(json.dumps({"questions": len(rows), "down_votes": votes, "out": out if rows else None}))
        return
    if not rows:
        console.print(f"no down-voted answers {_period(moment)}: nothing exported, {out} left as it was",
                      markup=False, highlight=False)
        return
    console.print(f"exported {len(rows)} down-voted question(s) ({votes} down-votes) to {out}; their gold sources are "
                  "unknown (empty `source`), so `docent eval run` scores no retrieval on them: see docs/flywheel.md",
                  markup=False, highlight=False)


async def _problem_questions(settings: Settings, since: datetime | None, down_voted_only: bool):
    """(answers logged in the period, its questions with problems, worst first)."""
    from docent.answers import AnswerStore, Database
    from evaluation.flywheel import fetch_asked, fetch_problem_answers, group_questions

    database = Database(settings)
    store = AnswerStore(database, settings.gateway.answer_retention_days)
    try:
        asked = await fetch_asked(store, since)
        answers = await fetch_problem_answers(store, since, settings.flywheel.low_score, down_voted_only)
    finally:
        await database.aclose()
    questions = group_questions(answers, asked, settings.flywheel.low_score, settings.rerank.base_url)
    return sum(a.answers for a in asked.values()), questions


def _period(since: datetime | None) -> str:
    from evaluation.flywheel import period

    return period(since)

