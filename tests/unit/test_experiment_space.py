"""Search spaces: parsing, the configurations each kind yields, trial settings and labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docent.settings import Settings
from evaluation.costs import cost_metrics, count_tokens
from evaluation.experiment import flatten_aggregates
from evaluation.space import ExperimentSpace, SpaceError, load_space, trial_label, trial_settings

EVAL_ROW = {"question": "q?", "source": "https://docs.example/a.html"}


@pytest.fixture
def space_dir(tmp_path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "eval.jsonl").write_text(json.dumps(EVAL_ROW) + "\n")
    return tmp_path


def write_space(folder: Path, text: str) -> Path:
    path = folder / "space.yaml"
    path.write_text("name: s1\ncorpus: docs\nbase_url: https://docs.example/\neval: eval.jsonl\n" + text)
    return path


def test_a_grid_is_every_combination_with_the_fixed_parameters(space_dir):
    space = load_space(write_space(space_dir, "fixed: {llm: extractive}\ngrid: {chunk_size: [300, 700], num_chunks: [5, 13]}\n"))
    configurations = space.configurations()
    assert len(configurations) == 4
    assert {(c["chunk_size"], c["num_chunks"]) for c in configurations} == {(300, 5), (300, 13), (700, 5), (700, 13)}
    assert all(c["llm"] == "extractive" for c in configurations)
    assert space.eval == space_dir / "eval.jsonl"  # paths are relative to the space file
    assert space.corpus == str(space_dir / "docs")


def test_random_draws_are_seeded_and_duplicates_collapse(space_dir):
    text = "random: {chunk_size: [100, 300, 500], num_chunks: [1, 5]}\nsamples: 20\nseed: 7\n"
    first = load_space(write_space(space_dir, text)).configurations()
    again = load_space(write_space(space_dir, text)).configurations()
    assert first == again
    assert 1 < len(first) <= 6  # 20 draws from 6 combinations: each configuration once
    assert len({json.dumps(c, sort_keys=True) for c in first}) == len(first)


def test_sweeps_vary_one_parameter_at_a_time_around_the_fixed_ones(space_dir):
    text = "fixed: {chunk_size: 700, num_chunks: 5}\nsweeps: {chunk_size: [300, 700], num_chunks: [1, 5, 9]}\n"
    configurations = load_space(write_space(space_dir, text)).configurations()
    pairs = [(c["chunk_size"], c["num_chunks"]) for c in configurations]
    # 700/5 is in both sweeps and runs once
    assert pairs == [(300, 5), (700, 5), (700, 1), (700, 9)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grid: {chunk_size: [300]}\nsweeps: {num_chunks: [1]}\n", "exactly one of grid, random or sweeps"),
        ("", "exactly one of grid, random or sweeps"),
        ("grid: {chunk_sise: [300]}\n", "unknown parameter 'chunk_sise'"),
        ("grid: {chunk_size: []}\n", "non-empty list"),
        ("random: {chunk_size: [300]}\n", "random needs samples"),
        ("grid: {chunk_size: [300]}\ncolour: blue\n", "colour"),
    ],
)
def test_a_bad_space_is_a_clear_error(space_dir, text, message):
    with pytest.raises(SpaceError, match=message):
        load_space(write_space(space_dir, text))


def test_missing_files_and_bad_yaml_are_clear_errors(space_dir):
    with pytest.raises(SpaceError, match="space file not found"):
        load_space(space_dir / "nope.yaml")
    (space_dir / "eval.jsonl").unlink()
    with pytest.raises(SpaceError, match="eval file not found"):
        load_space(write_space(space_dir, "grid: {num_chunks: [1]}\n"))
    (space_dir / "bad.yaml").write_text("grid: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(space_dir / "bad.yaml")


def test_trial_settings_apply_parameters_and_name_the_index():
    space = ExperimentSpace(name="s", corpus="/data/ray-docs-2.7", base_url="u", eval=Path("e"), grid={"num_chunks": [1]})
    settings = trial_settings(Settings(), {"chunk_size": 500, "num_chunks": 7, "rerank_threshold": 0.3, "llm": "extractive"})
    assert (settings.chunking.chunk_size, settings.retrieval.num_chunks, settings.rerank.threshold) == (500, 7, 0.3)
    assert space.index_name(settings) == "ray-docs-2-7-all-minilm-l6-v2-500-50"
    with pytest.raises(ValueError, match="chunk_overlap"):
        trial_settings(Settings(), {"chunk_size": 40})  # overlap 50 ≥ size 40


def test_labels_show_the_varied_parameters():
    assert trial_label({"chunk_size": 300, "llm": "extractive"}, ["chunk_size"]) == "chunk_size=300"
    assert trial_label({"llm": "extractive"}, []) == "llm=extractive"


def test_aggregates_flatten_to_mlflow_metric_names():
    flat = flatten_aggregates({"all": {"retrieval_score": 0.5, "recall@5": 0.4, "questions": 3, "quality_score": None},
                               "in_corpus": {"retrieval_score": 0.75}})
    assert flat == {"retrieval_score": 0.5, "recall_at_5": 0.4, "questions": 3, "quality_score": None,
                    "retrieval_score_in_corpus": 0.75}


class WordTokenizer:
    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])


def test_costs_price_the_same_tokens_for_every_llm():
    settings = Settings(generation={"system_prompt": "Be brief."},
                        evaluation={"prices": {"cheap": {"prompt": 1.0, "sampled": 2.0}}})
    rows = [{"question": "why not?", "answer": "one two three four", "sources": ["s1"], "contexts": ["a b c"], "cost": 0.0},
            {"question": "x", "answer": None, "error": "failed", "sources": [], "contexts": []}]
    counts = count_tokens(rows, settings, WordTokenizer())
    assert counts.mean_sampled_tokens == 4
    assert counts.mean_prompt_tokens > 2 + 3 + 2  # system prompt, context, question, plus headings
    metrics = cost_metrics(rows, settings, counts)
    expected = (counts.mean_prompt_tokens * 1.0 + 4 * 2.0) / 1_000_000
    assert metrics["cost_per_query/cheap"] == pytest.approx(expected)
    assert metrics["cost_per_query"] == 0.0
