"""Abstention on held-out questions: out-of-scope questions abstained, in-scope ones answered.

    python bench/abstention.py [--index NAME] [--eval FILE] [--json]

Fitted (as `docent calibrate` fits) on synthetic in-scope questions (a sample of
`embedding_qa.json` whose page the index holds) and on one half of the out-of-scope set
shipped with docent; reported on the other half and on the in-corpus questions of
`eval-dataset-v1.jsonl`, which no choice here looked at. The goal: at least 0.85 of
out-of-scope questions abstained with at most 0.05 of in-scope ones.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from pathlib import Path

from common import EVAL_SET, SHARED, emit_json, ray_docs_index, require_path

from docent.scope import ScopeModel, fit_scope
from docent.types import page_of
from evaluation.calibration import OUT_OF_SCOPE_SET, read_scope_questions, retrieve_features, sample, split_half

EMBEDDING_QA = SHARED / "datasets" / "embedding_qa.json"
IN_SCOPE_SAMPLE = 500
TARGETS = (0.01, 0.03, 0.05, 0.10)  # share of fitting in-scope questions the threshold may abstain on
GOAL = {"out_of_scope_abstained": 0.85, "in_scope_abstained": 0.05}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="bench-ray-300", help="an index of the Ray docs (bench/retrieval.py builds one)")
    parser.add_argument("--eval", default=str(EVAL_SET), help="in-scope questions reported on: {question, source} rows")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures last")
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    settings, pages = await ray_docs_index(args.index)
    fit_inside = [q for q in sample(read_scope_questions(require_path(EMBEDDING_QA, "embedding_qa.json"), "in-scope set"), IN_SCOPE_SAMPLE, 0)
                  if q.source and page_of(q.source) in pages]
    eval_inside = [q for q in read_scope_questions(require_path(Path(args.eval), "eval set"), "eval set") if q.source and page_of(q.source) in pages]
    outside = read_scope_questions(OUT_OF_SCOPE_SET, "out-of-scope set")
    fit_outside = [q for q in outside if split_half(q.question) == 0]
    held_outside = [q for q in outside if split_half(q.question) == 1]

    questions = [q.question for q in fit_inside + eval_inside + fit_outside + held_outside]
    print(f"retrieving {len(questions)} questions from {args.index} …")
    features = await retrieve_features(settings, questions)
    cut = [len(fit_inside), len(eval_inside), len(fit_outside)]
    f_in, f_eval = features[: cut[0]], features[cut[0] : cut[0] + cut[1]]
    f_out, f_held = features[cut[0] + cut[1] : sum(cut)], features[sum(cut) :]

    def shares(model: ScopeModel) -> dict[str, float]:
        held = _by_category(model, held_outside, f_held)
        return {
            "in_scope_abstained": _abstained(model, f_eval),
            "out_of_scope_abstained": _abstained(model, f_held),
            **{f"out_of_scope_{category}": share for category, share in held.items()},
        }

    rows = {"default (best similarity < abstention.min_similarity)": shares(ScopeModel.similarity_only(settings.abstention.min_similarity))}
    for target in TARGETS:
        model = fit_scope(f_in, f_out, target, settings.abstention.regularisation)
        rows[f"calibrated, target {target:.0%}"] = shares(model)
    print(f"\nfitted on {len(f_in)} in-scope (embedding_qa sample) + {len(f_out)} out-of-scope questions; "
          f"reported on {len(f_eval)} in-corpus eval questions + {len(f_held)} held-out out-of-scope ones\n")
    categories = sorted({k for r in rows.values() for k in r if k.startswith("out_of_scope_") and k != "out_of_scope_abstained"})
    header = ["configuration", "in-scope abstained", "out-of-scope abstained", *[c.removeprefix("out_of_scope_") for c in categories]]
    print(" | ".join(header))
    for label, figures in rows.items():
        print(" | ".join([label, f"{figures['in_scope_abstained']:.3f}", f"{figures['out_of_scope_abstained']:.3f}",
                          *[f"{figures.get(c, 0):.3f}" for c in categories]]))
    print(f"\ngoal: out-of-scope ≥ {GOAL['out_of_scope_abstained']} with in-scope ≤ {GOAL['in_scope_abstained']}")
    if args.json:
        emit_json({"index": args.index, "fit_in_scope": len(f_in), "fit_out_of_scope": len(f_out),
                   "eval_in_scope": len(f_eval), "held_out_of_scope": len(f_held), "rows": rows})


def _abstained(model: ScopeModel, features) -> float:
    return round(sum(not model.in_scope(f) for f in features) / max(1, len(features)), 3)


def _by_category(model: ScopeModel, questions, features) -> dict[str, float]:
    grouped = defaultdict(list)
    for question, feature in zip(questions, features):
        grouped[question.category or "uncategorised"].append(feature)
    return {category: _abstained(model, group) for category, group in sorted(grouped.items())}


if __name__ == "__main__":
    asyncio.run(main())
