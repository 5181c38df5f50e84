"""`docent eval run | router | references | golden`: score a configuration or the router; write reference answers
and synthetic eval sets with an LLM.

The work is in evaluation/ (runner.py, references.py, golden.py) and training/router.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from cli.support import INTERRUPTED, NAMED_INDEX, USAGE_ERROR, CountProgress, clear_errors, cli_settings, console, fail
from cli.train import router_table
from docent.llm import find_llm
from docent.settings import LLMSettings, Settings
from docent.types import Fusion, Strategy
from docent.uris import fetch, is_remote, local_target, publish

DEFAULT_GOLDEN_SECTIONS = 100


EvalSetOption = Annotated[
    str, typer.Option("--eval", help="eval set: JSON lines (or array) of {question, source}; a path or s3:// URI")
]

eval_app = typer.Typer(
    help="Score a configuration on an eval set; write reference answers or a golden eval set; score the router.",
    no_args_is_help=True,
)


def configured_llm(settings: Settings, name: str | None) -> LLMSettings:
    """The configured LLM named (default: evaluation.judge, or the only one configured); exit 2 otherwise."""
    llms = {m.name: m for m in settings.generation.llms}
    if not llms:
        raise fail("no LLM configured: add one under generation.llms (see config/llms.example.yaml)", USAGE_ERROR)
    name = name or settings.evaluation.judge or (next(iter(llms)) if len(llms) == 1 else None)
    if name is None:
        raise fail(f"name the LLM with --llm; configured LLMs: {', '.join(llms)}", USAGE_ERROR)
    with clear_errors():
        return find_llm(settings.generation.llms, name)


@eval_app.command("references")
def references(
    eval_file: EvalSetOption,
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

    with clear_errors(input_errors=NAMED_INDEX):
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
    rows = [(label, summary[key]) for label, key in (
        ("questions", "questions"), ("asked this run", "asked"), ("answered", "answered"),
        ("without gold text", "without_gold_text"), ("failed", "failed"))]
    if not _print_counts(summary, as_json, f"references · {chosen.name} · index {settings.index_name}", rows):
        return
    if report.failed:
        console.print(f"[yellow]{report.failed} LLM call(s) failed[/]: see `error` in {out}; a re-run asks again")
    console.print(f"references: {out}", highlight=False)


@eval_app.command("golden")
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

    with clear_errors(input_errors=NAMED_INDEX):
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
    rows = [("sections to sample from", report.sections), ("sampled", report.sampled), ("Ray tasks", report.tasks),
            *((f"dropped: {reason}", n) for reason, n in sorted(report.dropped.items())),
            ("duplicates", report.duplicates), ("pairs kept", len(report.kept))]
    title = f"golden set · {chosen.name} · index {settings.index_name} · seed {report.seed}"
    if not _print_counts(summary, as_json, title, rows):
        return
    console.print(f"golden set: {out}", highlight=False)


def _print_counts(summary: dict[str, Any], as_json: bool, title: str, rows: list[tuple[str, Any]]) -> bool:
    """The summary as one JSON object (False: nothing more to print), or as a table of counts (True)."""
    if as_json:
        print(json.dumps(summary))
        return False
    table = Table("", "count", title=title, title_justify="left")
    for label, count in rows:
        table.add_row(label, str(count))
    console.print(table)
    return True


@eval_app.command("router")
def eval_router(
    data: Annotated[Path, typer.Option(help="JSON lines of {question, target}")],
    model: Annotated[Path | None, typer.Option(help="artifact path (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Score the trained router on a labelled file."""
    from docent.routing import Router
    from training.router import evaluate_router, load_routing_rows

    with clear_errors():
        settings = cli_settings(router={"artifact": model})
        router = Router.load(settings.model_artifact("router"), settings.router.threshold)
        metrics = evaluate_router(router, load_routing_rows(data))
    if as_json:
        print(json.dumps({"metrics": metrics}))
        return
    console.print(router_table(f"{metrics['rows']} questions", metrics))


EVAL_RUNS_DIR = Path("eval-runs")


@eval_app.command("run")
def eval_run(
    eval_file: EvalSetOption,
    references: Annotated[
        str | None, typer.Option(help="reference answers: JSON array (or lines) of {question, answer}; a path or s3:// URI")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder of the run's files (default: ./eval-runs/INDEX)")] = None,
    index: Annotated[str | None, typer.Option(help="index to answer from (default: from settings)")] = None,
    num_chunks: Annotated[int | None, typer.Option(min=0, help="chunks retrieved per question (0: no context)")] = None,
    lexical_k: Annotated[int | None, typer.Option(min=0, help="BM25 hits joined to the semantic ones")] = None,
    fusion: Annotated[Fusion | None, typer.Option(help="how semantic and BM25 hits are joined")] = None,
    strategy: Annotated[Strategy | None, typer.Option(help="text around each hit")] = None,
    rerank: Annotated[bool | None, typer.Option("--rerank/--no-rerank", help="rerank (default: when trained)")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="the generator's system prompt")] = None,
    llm: Annotated[str | None, typer.Option(help="answer with this LLM (or `extractive`), not the routed one")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="questions answered at once (default: evaluation.concurrency)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N questions")] = None,
    judge: Annotated[
        str | None, typer.Option(help="score answers 1–5 against the references with this configured LLM "
                                 "(default: evaluation.judge)")
    ] = None,
    ragas: Annotated[bool, typer.Option(
        "--ragas", help="also grade faithfulness, answer relevancy, context precision and recall with the judge LLM "
        "(--judge, or evaluation.judge)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Answer an eval set with one configuration and score it offline; re-run to resume a stopped run.

    The configuration is the settings (`docent --config FILE`) with the options given here.

    Retrieval: retrieval_score (gold page retrieved), recall@k, MRR, nDCG, over the questions with a gold source (an empty `source`: none).

    Answers, where a reference exists: token F1 and embedding similarity to the reference;
    with --judge, quality_score: an LLM's 1–5 grade (unscored: replies it could not grade).

    With --ragas, Ragas-style metrics graded by the judge LLM: faithfulness and answer_relevancy of every answer; context_precision and context_recall where a reference exists.
    """
    from docent.uris import fetch
    from evaluation.judge import Judge
    from evaluation.runner import load_references, open_eval_set, run_eval

    with clear_errors(input_errors=NAMED_INDEX):
        settings = cli_settings(
            index=index,
            retrieval={"num_chunks": num_chunks, "lexical_k": lexical_k, "fusion": fusion, "strategy": strategy},
            rerank={"enabled": rerank},
            generation={"system_prompt": system_prompt},
            evaluation={"judge": judge, "concurrency": concurrency},
        )
        judge = settings.evaluation.judge
        judge_llm = find_llm(settings.generation.llms, judge, role="judge") if judge is not None else None
        if ragas and judge is None:
            raise fail("--ragas needs a judge LLM: --judge NAME, or evaluation.judge in the settings", USAGE_ERROR)
        eval_set = open_eval_set(fetch(eval_file, settings))
        answers = load_references(fetch(references, settings)) if references else {}
        out = out or EVAL_RUNS_DIR / settings.index_name
        progress = CountProgress("answering", enabled=not as_json)
        grader = Judge(judge_llm, settings.evaluation.judge_attempts) if judge_llm is not None else None
        scorer = None
        if ragas:
            from docent.embedding.model import load_embedder
            from evaluation.ragas import RagasScorer

            scorer = RagasScorer(judge_llm, load_embedder(settings.embedding),
                                 settings.evaluation.judge_attempts, settings.evaluation.relevancy_questions)

        async def evaluate():
            try:
                return await run_eval(settings, eval_set, answers, out, settings.evaluation.concurrency, limit, progress, llm=llm,
                                      judge=grader, ragas=scorer)
            finally:
                for closing in (grader, scorer):
                    if closing is not None:
                        await closing.aclose()

        try:
            report = asyncio.run(evaluate())
        except KeyboardInterrupt:
            raise fail(f"interrupted; the answers so far are in {out}: the same command continues", 130) from None
        finally:
            progress.stop()
    if as_json:
        print(json.dumps({"evaluation": str(report.evaluation), "responses": str(report.responses),
                          "asked": report.asked, "aggregates": report.aggregates}))
        return
    console.print(_eval_table(report.aggregates, settings.index_name))
    failed = report.aggregates["all"]["errors"]
    if failed:
        console.print(f"[yellow]{failed} question(s) failed[/]: see `error` in {report.responses}; a re-run asks again")
    console.print(f"answers: {report.responses}\nscores:  {report.evaluation}", highlight=False)


EVAL_SUMMARY = (  # label, aggregate, format
    ("questions", "questions", "{}"), ("answered", "answered", "{}"), ("errors", "errors", "{}"),
    ("with gold source", "with_gold", "{}"),  # the retrieval rows below average over these questions only
    ("retrieval_score", "retrieval_score", "{:.3f}"), ("recall@1", "recall@1", "{:.3f}"),
    ("recall@5", "recall@5", "{:.3f}"), ("MRR", "mrr", "{:.3f}"), ("nDCG", "ndcg", "{:.3f}"),
    ("token F1", "token_f1", "{:.3f}"), ("answer similarity", "answer_similarity", "{:.3f}"),
    ("quality_score (1–5)", "quality_score", "{:.2f}"), ("unscored", "unscored", "{}"),
    ("faithfulness", "faithfulness", "{:.3f}"), ("answer relevancy", "answer_relevancy", "{:.3f}"),
    ("context precision", "context_precision", "{:.3f}"), ("context recall", "context_recall", "{:.3f}"),
    ("ragas unscored", "ragas_unscored", "{}"),
    ("mean latency (ms)", "mean_latency_ms", "{:.0f}"), ("total cost ($)", "total_cost", "{:.4f}"),
)


def _eval_table(aggregates: dict, index: str) -> Table:
    columns = (Column("all", justify="right"), Column("in corpus", justify="right"))
    every = aggregates["all"]
    without_gold = every["questions"] - every.get("with_gold", every["questions"])
    caption = (f"{without_gold} question(s) without a gold source: no retrieval scores, left out of the retrieval means"
               if without_gold else None)
    table = Table("", *columns, title=f"eval run · index {index}", title_justify="left", caption=caption,
                  caption_justify="left")
    subsets = (every, aggregates["in_corpus"] or {})
    for label, key, form in EVAL_SUMMARY:
        table.add_row(label, *("–" if s.get(key) is None else form.format(s[key]) for s in subsets))
    return table
