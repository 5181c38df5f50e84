"""`docent finetune embeddings`: fine-tune the embedding model on question → section pairs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.support import INTERRUPTED, NAMED_INDEX, clear_errors, cli_settings, console, errors, fail
from docent.types import FinetuneMode

finetune_app = typer.Typer(help="Fine-tune models on the project's data.", no_args_is_help=True)


class _Bar:
    """One line on stderr: the stage with a spinner, and a bar of training steps once they start."""

    def __init__(self, enabled: bool):
        self.enabled, self.progress, self.task = enabled, None, None

    def __call__(self, stage: str, done: int | None, total: int | None) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[steps]}"),
                       TimeElapsedColumn()]
            self.progress = Progress(*columns, console=errors, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(stage, total=None, steps="")
        steps = f"{done}/{total} steps" if total else ""
        self.progress.update(self.task, description=stage, completed=done or 0, total=total, steps=steps)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@finetune_app.command("embeddings")
def embeddings(
    data: Annotated[
        Path, typer.Option(help="question → section pairs: JSON array (embedding_qa.json) or JSON lines (a golden set)")
    ],
    out: Annotated[Path, typer.Option(help="folder of the fine-tuned model (then: docent ingest --embedding-model OUT)")],
    index: Annotated[str | None, typer.Option(help="index whose chunks give each source's section text")] = None,
    mode: Annotated[FinetuneMode, typer.Option(help="full: every weight; embedding-layer: word embeddings only")] = FinetuneMode.FULL,
    add_vocab: Annotated[
        bool, typer.Option("--add-vocab", help="add frequent corpus words the tokenizer splits as tokens of their own")
    ] = False,
    sample: Annotated[int | None, typer.Option(min=1, help="a seeded random sample of N pairs")] = None,
    distractors: Annotated[
        int, typer.Option(min=0, help="other sections of the index added to the evaluator's corpus")
    ] = 500,
    skip_held_out: Annotated[
        bool, typer.Option("--skip-held-out", help="leave out the held-out tenth of the questions, on which retrieval "
                           "settings are chosen (as bench/retrieval.py scores them)")
    ] = False,
    embedding_model: Annotated[
        str | None, typer.Option(help="model to start from (default: embedding.model)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="passes over the training pairs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="pairs per step (the in-batch negatives)")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    validation_fraction: Annotated[float | None, typer.Option(help="share of pairs held out for validation")] = None,
    max_new_words: Annotated[int | None, typer.Option(help="most words --add-vocab adds")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling, split and training seed")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an earlier fine-tuned model in OUT")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object for scripts")] = False,
) -> None:
    """Fine-tune the embedding model with MultipleNegativesRankingLoss; validate with a retrieval evaluator each epoch.

    Each source's section text comes from the index (rows whose source it lacks are dropped and
    counted); whole sections are held out for validation, searched among --distractors other
    sections of the index. The output folder is a sentence-transformers model: use it as
    `--embedding-model` / `embedding.model` of a new index.
    """
    from training.embeddings import check_out_dir, finetune_embeddings, load_training_pairs

    bar = _Bar(enabled=not as_json)
    with clear_errors(input_errors=NAMED_INDEX):
        settings = cli_settings(
            index=index,
            embedding={"model": embedding_model},
            finetune={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                      "validation_fraction": validation_fraction, "max_new_words": max_new_words, "seed": seed},
        )
        check_out_dir(out, overwrite)  # before minutes of work
        try:
            bar("reading the pairs and their sections", None, None)
            training = asyncio.run(load_training_pairs(settings, data, settings.index_name, sample, distractors,
                                                        skip_held_out))
            result = finetune_embeddings(settings, training, out, mode, add_vocab, overwrite, progress=bar)
        except KeyboardInterrupt:
            raise fail(f"interrupted; nothing was written to {out}", INTERRUPTED) from None
        finally:
            bar.stop()
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    _print_summary(result)


def _print_summary(result) -> None:
    table = Table(title=f"fine-tuned {result.base_model} ({result.mode})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("pairs in the file", str(result.rows))
    if result.held_out:
        table.add_row("left out (the held-out tenth)", f"{result.held_out}")
    table.add_row("dropped (source not in the index)", f"{result.dropped}")
    table.add_row("pairs used: train / validation", f"{result.train_pairs} / {result.validation_pairs}")
    table.add_row("validation sections / evaluator corpus", f"{result.validation_sections} / {result.validation_corpus}")
    if result.add_vocab:
        table.add_row("words added to the vocabulary", str(result.new_tokens))
    table.add_row("trainable / all parameters", f"{result.trainable_parameters:,} / {result.total_parameters:,}")
    table.add_row("epochs / steps", f"{result.epochs} / {result.steps}")
    table.add_row("training seconds (total)", f"{result.seconds:.1f} ({result.total_seconds:.1f})")
    console.print(table)
    columns = ["validation", "before", *(["new words added"] if result.add_vocab else []), "after"]
    metrics = Table(*columns, title="retrieval evaluator (cosine)", title_justify="left")
    stages = [result.metrics_before, *([result.metrics_with_new_words] if result.add_vocab else []), result.metrics_after]
    for name in result.metrics_before:
        metrics.add_row(name, *("–" if stage.get(name) is None else f"{stage[name]:.3f}" for stage in stages))
    console.print(metrics)
    if result.dropped:
        console.print(f"{result.dropped} row(s) named a section the index {result.index!r} does not hold; they were left out")
    console.print(f"saved {result.out}\nuse it: docent ingest PATH --embedding-model {result.out}", highlight=False)
