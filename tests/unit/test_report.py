"""The experiment report on hand-made trial records: order, table, frame, and the plots' content."""

from __future__ import annotations

import math
import re

import pytest

from evaluation.report import (
    COST_VS_QUALITY_FILE,
    CSV_FILE,
    PARALLEL_COORDINATES_FILE,
    QUALITY_VS_RETRIEVAL_FILE,
    cost_points,
    cost_vs_quality_figure,
    format_cost,
    one_parameter_sweeps,
    parallel_coordinates_figure,
    quality_vs_retrieval_figure,
    sort_trials,
    sweep_figure,
    trials_frame,
    trials_table,
    write_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PRICED = {"cost_per_query[gpt-4]": 0.05, "cost_per_query[llama-2-70b]": 0.0016, "cost_per_query[local]": 0.0}


def _trial(label: str, params: dict | None = None, experiment: str = "chunk-size", **metrics) -> dict:
    return {"experiment": experiment, "trial": label, "run_id": f"run-{label}", "status": "FINISHED",
            "params": params or {}, "metrics": metrics}


def _chunk_sweep(with_quality: bool = False) -> list[dict]:
    """An offline chunk-size sweep: extractive answers (cost $0), priced estimates for other LLMs."""
    scores = {100: (0.5, 0.52, 3.1), 300: (0.7, 0.6, 3.9), 700: (0.74, 0.57, 3.6)}
    return [
        _trial(f"chunk_size={size}", {"llm": "extractive", "chunk_size": size}, retrieval_score=r,
               retrieval_score_in_corpus=r + 0.1, answer_similarity=a, token_f1=0.2, cost_per_query=0.0,
               **({"quality_score": q} if with_quality else {}), **PRICED)
        for size, (r, a, q) in scores.items()
    ]


def _labels(trials) -> list[str]:
    return [t["trial"] for t in trials]


def _column(table, header: str) -> list[str]:
    return next(list(c.cells) for c in table.columns if c.header == header)


# ------------------------------------------------------------------ order


def test_trials_sort_by_quality_then_retrieval_then_similarity_with_missing_last():
    trials = [
        _trial("no-scores"),
        _trial("unjudged-best-retrieval", retrieval_score=0.99, answer_similarity=0.9),
        _trial("q4-r5", quality_score=4.0, retrieval_score=0.5),
        _trial("q4-r7", quality_score=4.0, retrieval_score=0.7),
        _trial("q3-no-retrieval", quality_score=3.0),
        _trial("q3-r0", quality_score=3.0, retrieval_score=0.0),  # a score of 0 still beats a missing one
        _trial("q-nan", quality_score=math.nan, retrieval_score=None, answer_similarity=0.8),
        _trial("q4-r7-sim", quality_score=4.0, retrieval_score=0.7, answer_similarity=0.6),
    ]
    ordered = sort_trials(trials)
    assert _labels(ordered) == ["q4-r7-sim", "q4-r7", "q4-r5", "q3-r0", "q3-no-retrieval", "unjudged-best-retrieval", "q-nan",
                                "no-scores"]
    assert sort_trials([]) == []


# ------------------------------------------------------------------ table and frame


def test_table_has_a_row_per_trial_the_varied_params_and_the_metrics_present():
    trials = sort_trials(_chunk_sweep())
    trials[0]["metrics"]["cost_per_query"] = 0.0021
    table = trials_table(trials)
    headers = [c.header for c in table.columns]
    assert table.row_count == 3
    # llm is the same in every trial: only chunk_size varies; no judge, no Ragas: no such columns
    # one experiment: named in the title; the parameters say what the trial label would
    assert headers == ["chunk_size", "retrieval", "retrieval (in corpus)", "answer similarity", "token F1", "$ / query"]
    assert table.title.startswith("chunk-size: 3 trial(s)")
    assert _column(table, "chunk_size") == ["700", "300", "100"]
    assert _column(table, "retrieval") == ["0.740", "0.700", "0.500"]
    assert _column(table, "$ / query") == ["$0.0021", "$0", "$0"]


def test_table_shows_a_dash_for_missing_values_and_the_columns_asked_for():
    trials = [_trial("a", {"mode": "hybrid"}, quality_score=4.25, faithfulness=0.9),
              _trial("b", {"mode": "lexical", "rerank": True}, quality_score=None)]
    table = trials_table(trials, columns=["quality_score", "faithfulness", "mean_prompt_tokens"])
    assert [c.header for c in table.columns] == ["mode", "rerank", "quality (1–5)", "faithfulness", "mean_prompt_tokens"]
    assert _column(table, "rerank") == ["–", "True"]
    assert _column(table, "quality (1–5)") == ["4.25", "–"]
    assert _column(table, "faithfulness") == ["0.900", "–"]
    assert _column(table, "mean_prompt_tokens") == ["–", "–"]
    assert trials_table([]).row_count == 0


def test_table_names_experiments_when_there_are_several_and_labels_when_nothing_varies():
    mixed = trials_table([_trial("a", {"k": 1}, retrieval_score=0.5), _trial("b", {"k": 1}, "other", retrieval_score=0.6)])
    assert [c.header for c in mixed.columns] == ["experiment", "trial", "retrieval"]
    assert _column(mixed, "experiment") == ["chunk-size", "other"] and _column(mixed, "trial") == ["a", "b"]


@pytest.mark.parametrize(("dollars", "shown"), [(0.0, "$0"), (0.0021, "$0.0021"), (0.05763, "$0.058"),
                                                 (1.2, "$1.20"), (0.00003, "$0.000030")])
def test_costs_show_two_significant_digits(dollars, shown):
    assert format_cost(dollars) == shown


def test_frame_flattens_params_and_metrics_with_nan_for_missing():
    frame = trials_frame([_trial("a", {"chunk_size": 300}, retrieval_score=0.7),
                          _trial("b", {"mode": "hybrid"}, retrieval_score=None, quality_score=math.inf)])
    assert list(frame["trial"]) == ["a", "b"]
    assert frame.loc[0, "params.chunk_size"] == 300 and frame.loc[1, "params.mode"] == "hybrid"
    assert frame.loc[0, "metrics.retrieval_score"] == 0.7 and math.isnan(frame.loc[1, "metrics.retrieval_score"])
    assert frame["metrics.quality_score"].dtype == float and frame["metrics.quality_score"].isna().all()
    assert trials_frame([]).empty


# ------------------------------------------------------------------ plots


def test_write_plots_writes_the_csv_and_every_plot(tmp_path):
    out_dir = tmp_path / "report"
    written = write_plots(_chunk_sweep(with_quality=True), out_dir)
    names = {p.name for p in written}
    assert names == {CSV_FILE, QUALITY_VS_RETRIEVAL_FILE, COST_VS_QUALITY_FILE, PARALLEL_COORDINATES_FILE,
                     "sweep-chunk-size.png"}
    for path in written:
        assert path.parent == out_dir and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG_SIGNATURE)
    html = (out_dir / PARALLEL_COORDINATES_FILE).read_text()
    for label in ('"chunk_size"', '"quality (1', '"retrieval"', '"answer similarity"'):
        assert f'"label":{label}' in html
    # plotly.js inlined, no script fetched: users behind a firewall have no internet
    assert "* plotly.js v" in html and not re.search(r"<script[^>]*\bsrc=", html)
    csv_lines = (out_dir / CSV_FILE).read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[1].split(",")[1] == "chunk_size=300"  # header, then best first


def test_write_plots_on_no_trials_writes_nothing(tmp_path):
    assert write_plots([], tmp_path / "report") == []
    assert not (tmp_path / "report").exists()
    assert quality_vs_retrieval_figure([]) is None and cost_vs_quality_figure([]) is None
    assert parallel_coordinates_figure([]) is None and one_parameter_sweeps([]) == {}


def test_quality_plot_falls_back_to_answer_similarity_without_a_judge():
    unjudged = quality_vs_retrieval_figure(_chunk_sweep()).axes[0]
    judged = quality_vs_retrieval_figure(_chunk_sweep(with_quality=True)).axes[0]
    assert unjudged.get_ylabel().startswith("answer_similarity") and "no LLM judge" in unjudged.get_ylabel()
    assert judged.get_ylabel().startswith("quality_score")
    assert sorted(unjudged.collections[0].get_offsets()[:, 1]) == [0.52, 0.57, 0.6]
    assert sorted(judged.collections[0].get_offsets()[:, 1]) == [3.1, 3.6, 3.9]
    assert {t.get_text() for t in judged.texts} == {"chunk_size=100", "chunk_size=300", "chunk_size=700"}


def test_quality_plot_gives_each_experiment_its_own_marker():
    trials = [*_chunk_sweep(), _trial("num_chunks=5", {"num_chunks": 5}, "num-chunks", retrieval_score=0.6,
                                      answer_similarity=0.5)]
    axes = quality_vs_retrieval_figure(trials).axes[0]
    assert [len(c.get_offsets()) for c in axes.collections] == [3, 1]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["chunk-size", "num-chunks"]
    assert axes.collections[0].get_paths()[0] != axes.collections[1].get_paths()[0]


def test_cost_plot_leaves_zero_costs_off_its_log_axis_and_says_so():
    trials = [*_chunk_sweep(with_quality=True),
              _trial("llm=gpt-4", {"llm": "gpt-4"}, "llm", quality_score=4.2, retrieval_score=0.7,
                     cost_per_query=0.048)]
    points = cost_points(trials)
    assert [(p.label, p.cost, p.score) for p in points.measured] == [("gpt-4", 0.048, 4.2)]
    # estimates come from the best trial with priced costs: chunk_size=300 (quality 3.9); `local` costs $0
    assert points.best_trial == "chunk_size=300"
    assert {p.label: p.cost for p in points.estimated} == {"gpt-4": 0.05, "llama-2-70b": 0.0016}
    assert sorted(points.left_out) == ["extractive", "extractive", "extractive", "local"]

    axes = cost_vs_quality_figure(trials).axes[0]
    assert axes.get_xscale() == "log"
    plotted_costs = [x for c in axes.collections for x in c.get_offsets()[:, 0]]
    assert sorted(plotted_costs) == [0.0016, 0.048, 0.05]
    assert "4 point(s) at $0 left out" in axes.get_title() and "extractive ×3" in axes.get_title()


def test_cost_plot_is_skipped_when_nothing_costs_anything():
    free = [_trial("a", {"llm": "extractive"}, answer_similarity=0.5, cost_per_query=0.0)]
    assert cost_vs_quality_figure(free) is None


def test_parallel_coordinates_code_categorical_params_and_skip_incomplete_metrics():
    trials = [
        _trial("hybrid", {"mode": "hybrid", "rerank": True, "k": "5"}, retrieval_score=0.8, answer_similarity=0.6),
        _trial("lexical", {"mode": "lexical", "rerank": False, "k": "10"}, retrieval_score=0.6,
               answer_similarity=0.5, faithfulness=0.9),
        _trial("semantic", {"mode": "semantic", "k": "20"}, retrieval_score=0.7, answer_similarity=0.55),
        _trial("failed", {"mode": "semantic", "k": "1"}),
    ]
    figure = parallel_coordinates_figure(trials)
    dimensions = {d.label: d for d in figure.data[0].dimensions}
    assert list(dimensions) == ["mode", "rerank", "k", "retrieval", "answer similarity"]
    assert list(dimensions["mode"].ticktext) == ["hybrid", "lexical", "semantic"]
    assert list(dimensions["mode"].values) == [0, 1, 2]
    assert list(dimensions["rerank"].ticktext) == ["False", "True", "(not set)"]
    assert list(dimensions["rerank"].values) == [1, 0, 2]
    assert list(dimensions["k"].values) == [5, 10, 20] and dimensions["k"].ticktext is None  # MLflow's text numbers
    assert list(figure.data[0].line.color) == [0.6, 0.5, 0.55]
    title = figure.layout.title.text
    assert "1 trial(s) without metrics left out" in title and "faithfulness" in title


def test_sweeps_are_found_one_parameter_at_a_time_and_grids_are_not():
    one_at_a_time = [  # `sweeps:` with fixed num_chunks=5: chunk_size trials carry it too
        _trial("nc=1", {"num_chunks": 1}, "sweeps", retrieval_score=0.4),
        _trial("nc=5", {"num_chunks": 5}, "sweeps", retrieval_score=0.6),
        _trial("nc=9", {"num_chunks": 9}, "sweeps", retrieval_score=0.7),
        _trial("cs=100", {"num_chunks": 5, "chunk_size": 100}, "sweeps", retrieval_score=0.5),
        _trial("cs=300", {"num_chunks": 5, "chunk_size": 300}, "sweeps", retrieval_score=0.65),
    ]
    grid = [_trial(f"cs={cs},nc={nc}", {"chunk_size": cs, "num_chunks": nc}, "grid", retrieval_score=0.5)
            for cs in (100, 300) for nc in (1, 5)]
    sweeps = one_parameter_sweeps([*one_at_a_time, *grid])
    assert list(sweeps) == ["sweeps"]
    found = {s.parameter: _labels(s.trials) for s in sweeps["sweeps"]}
    assert found == {"num_chunks": ["nc=1", "nc=5", "nc=9"], "chunk_size": ["cs=100", "cs=300"]}


def test_a_categorical_sweep_has_category_ticks_and_reference_points():
    trials = [_trial(m, {"mode": m}, "mode", retrieval_score=r, answer_similarity=0.5, quality_score=q)
              for m, r, q in (("semantic", 0.6, 3.0), ("lexical", 0.55, 3.2), ("hybrid", 0.75, 3.5))]
    sweeps = one_parameter_sweeps(trials)["mode"]
    figure = sweep_figure("mode", sweeps, reference={"mode": [("semantic", 0.62), ("bm25-only", 0.4)]})
    axes, quality_axes = figure.axes
    assert [t.get_text() for t in axes.get_xticklabels()] == ["bm25-only", "hybrid", "lexical", "semantic"]
    retrieval = next(line for line in axes.get_lines() if line.get_label() == "retrieval_score")
    assert list(retrieval.get_xdata()) == [1, 2, 3] and list(retrieval.get_ydata()) == [0.75, 0.55, 0.6]
    assert sorted(map(tuple, axes.collections[0].get_offsets())) == [(0, 0.4), (3, 0.62)]
    assert quality_axes.get_ylabel().startswith("quality_score")
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == ["retrieval_score", "answer_similarity", "reference retrieval_score", "quality_score"]


def test_a_numeric_sweep_averages_repeated_values_on_a_numeric_axis():
    trials = [_trial("a", {"chunk_size": 300}, retrieval_score=0.6), _trial("b", {"chunk_size": 300},
                                                                            retrieval_score=0.8),
              _trial("c", {"chunk_size": 100}, retrieval_score=0.5)]
    figure = sweep_figure("chunk-size", one_parameter_sweeps(trials)["chunk-size"])
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == [100, 300] and list(line.get_ydata()) == pytest.approx([0.5, 0.7])
    assert len(figure.axes) == 1  # no quality: no second axis
