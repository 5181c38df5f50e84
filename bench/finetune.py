"""Fine-tuning the embedding model on a CPU: seconds and retrieval-evaluator scores, both modes.

    python bench/finetune.py [--index bench-ray-300] [--data FILE] [--sample 500] [--epochs 1] [--distractors 500]
                             [--modes full embedding-layer] [--add-vocab] [--max-seq-length N] [--keep DIR] [--json]

Pairs come from ../shared/datasets/embedding_qa.json, each question's section text from an
index of ../shared/corpora/ray-docs-2.7 (see `docent indexes`; the benchmarks build
`bench-ray-300` with bench/retrieval.py). A seeded sample, one epoch by default, whole
sections held out for the evaluator (10 %), searched among 500 other sections of the
index. Each mode starts from the same base model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from common import SHARED, emit_json, require_path

from docent.settings import load_settings
from docent.types import FinetuneMode
from training.embeddings import FinetuneError, finetune_embeddings, load_training_pairs

EMBEDDING_QA = SHARED / "datasets" / "embedding_qa.json"
METRICS = ("accuracy@1", "accuracy@10", "mrr@10", "ndcg@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="bench-ray-300", help="index of the Ray docs giving the section texts")
    parser.add_argument("--data", type=Path, default=EMBEDDING_QA)
    parser.add_argument("--sample", type=int, default=500, help="pairs sampled (seeded) from those the index holds")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--distractors", type=int, default=500, help="other sections in the evaluator's corpus")
    parser.add_argument("--batch-size", type=int, default=None, help="default: finetune.batch_size (16)")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: finetune.learning_rate (2e-5)")
    parser.add_argument("--modes", nargs="+", default=list(FinetuneMode), choices=list(FinetuneMode))
    parser.add_argument("--add-vocab", action="store_true", help="also add the corpus words (each mode)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="truncate inputs (default: the model's)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the models under this folder")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    require_path(args.data, "the embedding QA data set")

    settings = load_settings(
        index=args.index,
        embedding={"max_seq_length": args.max_seq_length},
        finetune={"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate},
    )
    started = time.perf_counter()
    try:
        training = asyncio.run(load_training_pairs(settings, args.data, args.index, args.sample, args.distractors))
    except FinetuneError as exc:
        raise SystemExit(f"{exc}\n(indexes: DOCENT_DATA_DIR={os.environ.get('DOCENT_DATA_DIR', '~/.local/share/docent')}"
                         " docent indexes)") from None
    print(f"{args.data.name}: {training.rows} pairs, {training.dropped} dropped (source not in index {args.index}), "
          f"{len(training.pairs)} sampled, {len(training.distractors)} distractor sections; pairs + section texts read in {time.perf_counter() - started:.1f} s; "
          f"{os.cpu_count()} CPUs", flush=True)

    runs, cpu_seconds = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as scratch:
        root = args.keep or Path(scratch)
        for mode in args.modes:
            t0, cpu0 = time.perf_counter(), time.process_time()

            def show(stage: str, done: int | None, total: int | None, mode=mode, t0=t0) -> None:
                if total and (done in (1, total) or done % 10 == 0):
                    print(f"  {mode}: step {done}/{total} at {time.perf_counter() - t0:.0f} s", flush=True)

            result = finetune_embeddings(settings, training, root / f"ft-{mode}", mode, args.add_vocab,
                                         overwrite=True, progress=show)
            cpu_seconds[mode] = time.process_time() - cpu0
            runs.append(result)
            print(f"{_line(result)}; {cpu_seconds[mode]:.0f} CPU-seconds", flush=True)
    print()
    print(f"{'mode':<18}{'train':>6}{'val':>5}{'steps':>6}{'train s':>9}{'total s':>9}{'CPU s':>7}  " +
          "  ".join(f"{m + ' before→after':>26}" for m in METRICS))
    for r in runs:
        cells = "  ".join(f"{r.metrics_before[m]:>12.3f} → {r.metrics_after[m]:<11.3f}" for m in METRICS)
        print(f"{r.mode + (' +vocab' if r.add_vocab else ''):<18}{r.train_pairs:>6}{r.validation_pairs:>5}"
              f"{r.steps:>6}{r.seconds:>9.1f}{r.total_seconds:>9.1f}{cpu_seconds[r.mode]:>7.0f}  {cells}")
    if args.json:
        emit_json({"sample": len(training.pairs), "dropped": training.dropped, "cpus": os.cpu_count(),
                   "runs": [{**r.to_dict(), "cpu_seconds": round(cpu_seconds[r.mode], 1)} for r in runs]})


def _line(r) -> str:
    vocab = f", {r.new_tokens} words added (ndcg@10 then {r.metrics_with_new_words.get('ndcg@10', 0):.3f})" if r.add_vocab else ""
    return (f"{r.mode}: {r.train_pairs} train / {r.validation_pairs} validation pairs, {r.steps} steps in {r.seconds:.1f} s "
            f"({r.total_seconds:.1f} s in all){vocab}; ndcg@10 {r.metrics_before['ndcg@10']:.3f} → "
            f"{r.metrics_after['ndcg@10']:.3f}")


if __name__ == "__main__":
    main()
