"""`docent eval references | golden`: reference answers and synthetic eval sets written by an LLM.

Registered on `docent eval` by docent.cli; the work is in evaluation/references.py and
evaluation/golden.py.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from docent.cli_support import INTERRUPTED, USAGE_ERROR, CountProgress, cli_settings, console, eval_errors, fail
from docent.settings import LLMSettings, Settings
from ingest.remote import fetch, is_remote, local_target, publish

DEFAULT_GOLDEN_SECTIONS = 100


@contextmanager
def _llm_eval_errors():
    """`eval_errors`, plus a configured tokenizer that is not there (exit 2)."""
    from services.generator.tokenizer import TokenizerError

    with eval_errors():
        try:
            yield
        except TokenizerError as exc:
            raise fail(str(exc), USAGE_ERROR) from None


def configured_llm(settings: Settings, name: str | None) -> LLMSettings:
    """The configured LLM named (default: evaluation.judge, or the only one configured); exit 2 otherwise."""
    llms = {m.name: m for m in settings.generation.llms}
    if not llms:
        raise fail("no LLM configured: add one under generation.llms (see config/llms.example.yaml)", USAGE_ERROR)
    name = name or settings.evaluation.judge or (next(iter(llms)) if len(llms) == 1 else None)
    if name is None:
        raise fail(f"name the LLM with --llm; configured LLMs: {', '.join(llms)}", USAGE_ERROR)
    if name not in llms:
        raise fail(f"unknown LLM {name!r}; configured LLMs: {', '.join(llms)}", USAGE_ERROR)
    return llms[name]


def references(
    eval_file: Annotated[
        str, typer.Option("--eval", help="eval set: JSON lines (or array) of {question, source}; a path or s3:// URI")
    ],
    llm: Annotated[
        str | None, typer.Option(help="configured LLM writing the answers (default: evaluation.judge)")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="JSON file written, a path or s3:// URI (default: ./references-LLM.json)")
    ] = None,
    index: Annotated[str | None, typer.Option(help="index holding the gold sections (default: from settings)")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="LLM calls at once (default: evaluation.concurrency)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N questions")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Write reference answers for an eval set: an LLM answers each question from the text of its gold section.

    The gold text is the index's chunks of the gold source, or of its page when that section is not indexed, trimmed to the LLM's context; a question with neither gets an empty answer without asking the LLM.

    The output is a JSON array of {question, source, answer, llm, context_found} usable as `docent eval run --references`. Re-running into the same file asks only the questions without an answer; failed calls are recorded and asked again.
    """
    from evaluation.references import generate_references
    from evaluation.runner import open_eval_set

    with _llm_eval_errors():
        settings = cli_settings(index=index)
        chosen = configured_llm(settings, llm)
        eval_set = open_eval_set(fetch(eval_file, settings))
        out = out or f"references-{chosen.name}.json"
        written = local_target(out, settings)
        progress = CountProgress("answering", enabled=not as_json)
        run = generate_references(settings, eval_set, chosen, written, concurrency or settings.evaluation.concurrency,
                                  limit, progress)
        try:
            report = asyncio.run(run)
        except KeyboardInterrupt:
            raise fail(f"interrupted; the answers so far are in {written}: the same command continues", INTERRUPTED) from None
        finally:
            progress.stop()
        if is_remote(out):
            publish(written, out, settings)
    summary = report.summary() | {"llm": chosen.name, "index": settings.index_name}
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("", "count", title=f"references · {chosen.name} · index {settings.index_name}",
                  title_justify="left")
    for label, key in (("questions", "questions"), ("asked this run", "asked"), ("answered", "answered"),
                       ("without gold text", "without_gold_text"), ("failed", "failed")):
        table.add_row(label, str(summary[key]))
    console.print(table)
    if report.failed:
        console.print(f"[yellow]{report.failed} LLM call(s) failed[/]: see `error` in {out}; a re-run asks again")
    console.print(f"references: {out}", highlight=False)


def golden(
    sections: Annotated[int, typer.Option(min=1, help="sections to sample, one question each")] = DEFAULT_GOLDEN_SECTIONS,
    seed: Annotated[int | None, typer.Option(help="seed of the random sample (default: a new one, printed)")] = None,
    min_chars: Annotated[
        int | None, typer.Option(min=1, help="shortest section sampled, in characters (default: evaluation.golden_min_section_chars)")
    ] = None,
    llm: Annotated[
        str | None, typer.Option(help="configured LLM writing the pairs (default: evaluation.judge)")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="JSON lines file written, a path or s3:// URI (default: ./golden-INDEX.jsonl)")
    ] = None,
    index: Annotated[str | None, typer.Option(help="index to sample sections from (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Generate a synthetic eval set: an LLM writes one question and answer per sampled section, in Ray tasks.

    Sections (an index's chunks grouped by source) of at least --min-chars characters are sampled at random; replies without JSON, a question or an answer are dropped, and so are near-duplicate questions (evaluation.golden_dedup_similarity).

    The output, JSON lines of {question, source, answer}, serves both as `--eval` and as `--references` of `docent eval run`.
    """
    from evaluation.golden import generate_golden

    with _llm_eval_errors():
        settings = cli_settings(index=index, evaluation={"golden_min_section_chars": min_chars})
        chosen = configured_llm(settings, llm)
        out = out or f"golden-{settings.index_name}.jsonl"
        written = local_target(out, settings)
        progress = CountProgress("sections", enabled=not as_json)
        try:
            report = asyncio.run(generate_golden(settings, chosen, written, sections, seed, progress))
        except KeyboardInterrupt:
            raise fail("interrupted; nothing was written", INTERRUPTED) from None
        finally:
            progress.stop()
        if is_remote(out):
            publish(written, out, settings)
    summary = report.summary() | {"llm": chosen.name, "index": settings.index_name}
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("", "count", title=f"golden set · {chosen.name} · index {settings.index_name} · seed {report.seed}",
                  title_justify="left")
    rows = [("sections to sample from", report.sections), ("sampled", report.sampled), ("Ray tasks", report.tasks),
            *((f"dropped: {reason}", n) for reason, n in sorted(report.dropped.items())),
            ("duplicates", report.duplicates), ("pairs kept", len(report.kept))]
    for label, count in rows:
        table.add_row(label, str(count))
    console.print(table)
    console.print(f"golden set: {out}", highlight=False)
