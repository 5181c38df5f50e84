"""`docent train reranker | router`: the tag classifier and the router, with their figures beside the reference's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.support import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    clear_errors,
    cli_settings,
    console,
    fail,
)

train_app = typer.Typer(help="Train the reranker's tag classifier or the router.", no_args_is_help=True)

# The reference's figures (ray-assistant-guide.md), printed beside ours.
REFERENCE_RERANKER = {"precision": 0.917, "recall": 0.917, "f1": 0.915}
# The reference averaged both (`precision_recall_fscore_support(..., average="weighted")`).
REFERENCE_ROUTER = {"precision_weighted": 0.919, "recall_weighted": 0.929, "f1_weighted": 0.923, "routed_to_oss": 0.948}
SCORES = ("precision", "recall", "f1")


def metrics_table(title: str, ours: dict, reference: dict) -> Table:
    """The reranker's scores (weighted averages, as the reference's) beside the reference's."""
    table = Table("metric", "docent", "reference", title=title, title_justify="left")
    for name in SCORES:
        table.add_row(f"{name} (weighted)", f"{ours[name]:.3f}", f"{reference[name]:.3f}")
    return table


def router_table(title: str, ours: dict) -> Table:
    """The router's weighted scores beside the reference's (like with like), then the open-source label's own."""
    table = Table("metric", "docent", "reference", title=title, title_justify="left")
    for name in SCORES:
        table.add_row(f"{name} (weighted)", f"{ours[f'{name}_weighted']:.3f}", f"{REFERENCE_ROUTER[f'{name}_weighted']:.3f}")
    for name in SCORES:
        table.add_row(f"{name} (open-source label only)", f"{ours[name]:.3f}", "–")
    table.add_row("routed to the open-source LLM", f"{ours['routed_to_oss']:.1%}", f"{REFERENCE_ROUTER['routed_to_oss']:.1%}")
    return table


@train_app.command("reranker")
def train_reranker(
    data: Annotated[Path, typer.Option(help="JSON array of {question, source} (e.g. embedding_qa.json)")],
    base_url: Annotated[
        str | None, typer.Option(help="docs URL whose first path segment is the tag (default: rerank.base_url)")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="artifact path (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Train the tag classifier: stratified 80/20 split (seed 1234), weighted scores, sanity checks."""
    from training.reranker import load_qa_pairs
    from training.reranker import train_reranker as train

    with clear_errors():
        settings = cli_settings(rerank={"base_url": base_url, "artifact": output})
        if not settings.rerank.base_url:
            raise fail(
                "which docs site are the tags of? give --base-url (or rerank.base_url): the docs URL whose first path "
                "segment is a page's area, e.g. https://docs.ray.io/en/master/ (config/ray-docs.yaml sets it)",
                USAGE_ERROR,
            )
        with console.status("training the tag classifier…"):
            result = train(load_qa_pairs(data), settings.rerank.base_url)
        path = settings.model_artifact("reranker")
        if result.sanity_passed:
            result.classifier.model.save(path)
    if as_json:
        print(json.dumps({"metrics": result.metrics, "sanity_passed": result.sanity_passed, "artifact": str(path) if result.sanity_passed else None,
                          "sanity": [dict(zip(("question", "expected", "predicted", "probability"), row)) for row in result.sanity]}))
    else:
        console.print(metrics_table(f"held-out 20 % ({result.metrics['test_rows']} rows), weighted", result.metrics, REFERENCE_RERANKER))
        checks = Table("", "question", "expected", "predicted", title="minimum-functionality checks", title_justify="left")
        for question, expected, predicted, probability in result.sanity:
            mark = "[green]✓[/]" if expected == predicted else "[red]✗[/]"
            checks.add_row(mark, question, expected, f"{predicted} ({probability:.0%})")
        console.print(checks)
    if not result.sanity_passed:
        raise fail("a minimum-functionality check failed: the model was not saved", RUNTIME_ERROR)
    if not as_json:
        console.print(f"saved {path}")


@train_app.command("router")
def train_router(
    data: Annotated[
        Path | None, typer.Option(help="JSON lines of {question, target} (1: open-source LLM, 0: strong)")
    ] = None,
    from_eval: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--from-eval", help="OSS.json STRONG.json: two `docent eval run --judge` evaluations of the same questions"),
    ] = None,
    tolerance: Annotated[
        float | None, typer.Option(min=0, help="with --from-eval: label 1 where OSS quality ≥ strong quality − this")
    ] = None,
    labels_out: Annotated[Path | None, typer.Option(help="with --from-eval: also write the labels as JSON lines")] = None,
    output: Annotated[Path | None, typer.Option(help="artifact path (default: from settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Train the router: cross-validated scores (5 folds, fewer for a small label set), then a fit on all rows.

    Labels come from --data, or from --from-eval: the system's own judgements of an open-source and a strong LLM on the same eval set.
    """
    from evaluation.routing import labels_from_evaluations
    from training.router import load_routing_rows
    from training.router import train_router as train

    if (data is None) == (from_eval is None):
        raise fail("give --data FILE or --from-eval OSS.json STRONG.json (one of them)", USAGE_ERROR)
    with clear_errors():
        settings = cli_settings(router={"artifact": output, "label_tolerance": tolerance})
        labels = None
        if from_eval is not None:
            labels = labels_from_evaluations(*from_eval, settings.router.label_tolerance)
            if labels_out is not None:
                labels_out.write_text(labels.to_jsonl(), encoding="utf-8")
        rows = labels.rows if labels is not None else load_routing_rows(data)
        router, metrics = train(rows)
        path = router.model.save(settings.model_artifact("router"))
    source = {} if labels is None else {
        "labels": {"rows": len(labels.rows), "open_source": sum(t for _, t in labels.rows),
                   "unscored": labels.unscored, "unmatched": labels.unmatched}}
    if as_json:
        print(json.dumps({"metrics": metrics, "artifact": str(path)} | source))
        return
    if labels is not None:
        counts = source["labels"]
        console.print(f"labels from evaluations: {counts['rows']} questions, {counts['open_source']} to the open-source "
                      f"LLM (tolerance {settings.router.label_tolerance}); {labels.unscored} unscored and "
                      f"{labels.unmatched} unmatched left out")
    console.print(router_table(f"{metrics['folds']}-fold cross-validation", metrics))
    console.print(f"saved {path}")


