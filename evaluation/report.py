"""What `docent experiment report` shows: the trials of experiments as a table, a CSV and plots.

A trial is a plain dict read back from MLflow (`evaluation.tracking.TrialRun.as_record`):
`experiment`, `trial` (a short label of its parameters), `run_id`, `status`, `params` (the
parameters its space varies or sets; numbers, strings or booleans) and `metrics` (any of them
missing or None: `quality_score` needs an LLM judge, the Ragas-style ones are optional).

Plots are written with matplotlib's object API (no pyplot, so no global backend to switch and
nothing left open) and plotly, its JavaScript inlined because users behind a firewall cannot
fetch it from a CDN. Nothing here raises on an empty list of trials: there is just nothing to show.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from rich.table import Table

Trial = Mapping[str, Any]

QUALITY = "quality_score"
RETRIEVAL = "retrieval_score"
RETRIEVAL_IN_CORPUS = "retrieval_score_in_corpus"
ANSWER_SIMILARITY = "answer_similarity"
TOKEN_F1 = "token_f1"
RAGAS_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
COST = "cost_per_query"  # $ per query of the LLM that answered
_PRICED_COST = re.compile(r"^cost_per_query\[(?P<llm>.+)\]$")  # $ per query had that priced LLM answered

SORT_METRICS = (QUALITY, RETRIEVAL, ANSWER_SIMILARITY)  # best first by the first, ties by the next
KEY_METRICS = (QUALITY, RETRIEVAL, RETRIEVAL_IN_CORPUS, ANSWER_SIMILARITY, TOKEN_F1, *RAGAS_METRICS, COST)
SWEEP_METRICS = (RETRIEVAL, ANSWER_SIMILARITY)  # on a 0–1 axis; quality (1–5) gets its own

METRIC_LABELS = {
    QUALITY: "quality (1–5)",
    RETRIEVAL: "retrieval",
    RETRIEVAL_IN_CORPUS: "retrieval (in corpus)",
    ANSWER_SIMILARITY: "answer similarity",
    TOKEN_F1: "token F1",
    "answer_relevancy": "answer relevancy",
    "context_precision": "context precision",
    "context_recall": "context recall",
    COST: "$ / query",
}
AXIS_LABELS = {
    QUALITY: "quality_score (LLM judge, 1–5)",
    RETRIEVAL: "retrieval_score (gold page retrieved)",
    ANSWER_SIMILARITY: "answer_similarity (no quality_score: no LLM judge in these runs)",
}
QUALITY_FORMAT = "{:.2f}"
TOKEN_FORMAT = "{:,.0f}"
SCORE_FORMAT = "{:.3f}"  # the 0–1 metrics, and any metric not named here
METRIC_FORMATS = {QUALITY: QUALITY_FORMAT, "mean_prompt_tokens": TOKEN_FORMAT, "mean_sampled_tokens": TOKEN_FORMAT}
COST_SIGNIFICANT_DIGITS = 2  # $0.0021, $0.057: enough to compare LLMs whose costs span orders of magnitude
MISSING = "–"
NOT_SET = "(not set)"  # a parameter a trial's space left at its configured default

CSV_FILE = "trials.csv"
QUALITY_VS_RETRIEVAL_FILE = "quality_vs_retrieval.png"
PARALLEL_COORDINATES_FILE = "parallel_coordinates.html"
COST_VS_QUALITY_FILE = "cost_vs_quality.png"
SWEEP_FILE = "sweep-{experiment}.png"

FIGURE_SIZE = (9.0, 6.0)  # inches
SWEEP_PANEL_SIZE = (6.0, 4.0)  # inches, one panel per swept parameter
DPI = 120
POINT_LABEL_FONT_SIZE = 7
POINT_LABEL_OFFSET = (4, 4)  # points right of and above the marker it names
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
COLOURS = 10  # matplotlib's default colour cycle, C0…C9
MEASURED_COLOUR, ESTIMATED_COLOUR, QUALITY_COLOUR = "C0", "C1", "C2"
REFERENCE_COLOUR = "black"
REFERENCE_ZORDER = 3  # reference points drawn over the sweep's lines
GRID_ALPHA = 0.3  # a faint grid: reading values off without hiding the points
MAX_NAMED_LEFT_OUT = 4  # names of zero-cost points listed in the title before "…"
COLOURSCALE = "Viridis"


# ------------------------------------------------------------------ values


def metric(trial: Trial, name: str) -> float | None:
    """The trial's metric as a float; None when missing, None, NaN or not a number."""
    return _finite_number((trial.get("metrics") or {}).get(name))


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _param_number(value: Any) -> float | None:
    """A parameter's numeric value: numbers, and numeric text (MLflow keeps params as text); never a boolean."""
    if isinstance(value, str):
        try:
            return _finite_number(float(value))
        except ValueError:
            return None
    return _finite_number(value)


def _param_key(value: Any) -> tuple[str, Any]:
    """Hashable identity of a parameter value, keeping True apart from 1 and 300 together with "300"."""
    if isinstance(value, bool):
        return ("bool", value)
    number = _param_number(value)
    return ("number", number) if number is not None else ("text", str(value))


def _format_param(value: Any) -> str:
    if value is None:
        return MISSING
    number = _param_number(value)
    return f"{number:g}" if number is not None and not isinstance(value, str) else str(value)


def _category_order(values: Iterable[Any]) -> list[Any]:
    """Distinct values, numbers by size before text alphabetically: stable axes from run to run."""
    distinct = {_param_key(v): v for v in values}
    return [distinct[k] for k in sorted(distinct, key=_category_sort_key)]


def _category_sort_key(key: tuple[str, Any]) -> tuple[bool, float, str]:
    kind, value = key
    return (False, value, "") if kind == "number" else (True, 0.0, f"{kind}:{value}")


def _experiment(trial: Trial) -> str:
    return str(trial.get("experiment") or "")


def _label(trial: Trial) -> str:
    return str(trial.get("trial") or trial.get("run_id") or "")


def _params(trial: Trial) -> Mapping[str, Any]:
    return trial.get("params") or {}


def varied_params(trials: Sequence[Trial]) -> list[str]:
    """Parameters whose value, or whether it is set, differs between the trials; first-seen order."""
    names = dict.fromkeys(name for t in trials for name in _params(t))
    return [n for n in names if len({_setting_key(t, n) for t in trials}) > 1]


def primary_metric(trials: Sequence[Trial]) -> str:
    """quality_score when any trial was judged, else answer_similarity (offline runs have no judge)."""
    return QUALITY if any(metric(t, QUALITY) is not None for t in trials) else ANSWER_SIMILARITY


def priced_costs(trial: Trial) -> dict[str, float]:
    """LLM name → the trial's estimated $ per query had that priced LLM answered."""
    found = {}
    for name in trial.get("metrics") or {}:
        match = _PRICED_COST.match(name)
        cost = metric(trial, name)
        if match and cost is not None:
            found[match["llm"]] = cost
    return found


# ------------------------------------------------------------------ sorting, table, frame


def sort_trials(trials: Iterable[Trial]) -> list[Trial]:
    """Best first: by quality_score, then retrieval_score, then answer_similarity, each descending, missing last."""

    def key(trial: Trial) -> tuple[tuple[bool, float], ...]:
        values = (metric(trial, name) for name in SORT_METRICS)
        return tuple((v is None, -(v or 0.0)) for v in values)

    return sorted(trials, key=key)


def format_metric(name: str, value: float | None) -> str:
    """A metric for a table cell: "–" when missing, dollars for costs, 2 decimals for quality, 3 for scores."""
    if value is None:
        return MISSING
    if name == COST or _PRICED_COST.match(name):
        return format_cost(value)
    return METRIC_FORMATS.get(name, SCORE_FORMAT).format(value)


def format_cost(dollars: float) -> str:
    """Dollars with enough decimals to show two significant digits: $0.0021, $0.057, $1.20; $0 for free."""
    if dollars <= 0:
        return "$0"
    decimals = max(2, COST_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(dollars)))
    return f"${dollars:.{decimals}f}"


def trials_table(trials: Sequence[Trial], columns: Sequence[str] | None = None) -> Table:
    """One row per trial, in the order given (pass `sort_trials(trials)` for best first).

    Columns: the experiment (when there are several), the parameters that differ between
    trials (else the trial's label), and `columns` (metric names; default: the key metrics
    any trial has). Nothing is repeated: terminals are narrow.
    """
    params = varied_params(trials)
    shown = list(columns) if columns is not None else [
        m for m in KEY_METRICS if any(metric(t, m) is not None for t in trials)
    ]
    experiments = sorted({_experiment(t) for t in trials})
    title = f"{experiments[0]}: " if len(experiments) == 1 else ""
    table = Table(title=f"{title}{len(trials)} trial(s)", title_justify="left")
    if len(experiments) > 1:
        table.add_column("experiment")
    if not params:
        table.add_column("trial")
    for name in params:
        table.add_column(name, justify="right")
    for name in shown:
        table.add_column(METRIC_LABELS.get(name, name), justify="right")
    for trial in trials:
        table.add_row(
            *([_experiment(trial) or MISSING] if len(experiments) > 1 else []),
            *([] if params else [_label(trial) or MISSING]),
            *(_format_param(_params(trial).get(name)) for name in params),
            *(format_metric(name, metric(trial, name)) for name in shown),
        )
    return table


def trials_frame(trials: Sequence[Trial]) -> pd.DataFrame:
    """One row per trial: its top-level fields, then `params.<name>` as given and `metrics.<name>` as floats (NaN
    when missing), MLflow's own column names."""
    rows, param_names, metric_names = [], {}, {}
    for trial in trials:
        row = {k: v for k, v in trial.items() if k not in ("params", "metrics")}
        for name, value in _params(trial).items():
            param_names[f"params.{name}"] = None
            row[f"params.{name}"] = value
        for name in trial.get("metrics") or {}:
            metric_names[f"metrics.{name}"] = None
            value = metric(trial, name)
            row[f"metrics.{name}"] = math.nan if value is None else value
        rows.append(row)
    fields = dict.fromkeys(k for row in rows for k in row if k not in param_names and k not in metric_names)
    frame = pd.DataFrame(rows, columns=[*fields, *param_names, *metric_names])
    for column in metric_names:
        frame[column] = pd.to_numeric(frame[column]).astype(float)  # a metric no trial has is still a float column
    return frame


# ------------------------------------------------------------------ plots


def write_plots(
    trials: Sequence[Trial],
    out_dir: Path,
    reference: Mapping[str, Sequence[tuple[Any, float]]] | None = None,
) -> list[Path]:
    """Write trials.csv and every plot the trials allow into out_dir; the files written, [] for no trials.

    `reference`: parameter → (value, retrieval_score) points drawn beside a sweep of that parameter.
    """
    trials = list(trials)
    if not trials:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = sort_trials(trials)
    csv_path = out_dir / CSV_FILE
    trials_frame(ordered).to_csv(csv_path, index=False)
    written = [csv_path]
    figures = {
        QUALITY_VS_RETRIEVAL_FILE: quality_vs_retrieval_figure(ordered),
        COST_VS_QUALITY_FILE: cost_vs_quality_figure(ordered),
    }
    used_names: set[str] = set()
    for experiment, sweeps in one_parameter_sweeps(ordered).items():
        figures[_sweep_file(experiment, used_names)] = sweep_figure(experiment, sweeps, reference)
    for file_name, figure in figures.items():
        if figure is not None:
            figure.savefig(out_dir / file_name, dpi=DPI, bbox_inches="tight")
            written.append(out_dir / file_name)
    coordinates = parallel_coordinates_figure(ordered)
    if coordinates is not None:
        coordinates.write_html(out_dir / PARALLEL_COORDINATES_FILE, include_plotlyjs=True, full_html=True)
        written.append(out_dir / PARALLEL_COORDINATES_FILE)
    return written


def quality_vs_retrieval_figure(trials: Sequence[Trial]) -> Figure | None:
    """quality_score (answer_similarity when no trial was judged) against retrieval_score: one colour and marker
    per experiment, each point named by its trial label. None when no trial has both."""
    y_name = primary_metric(trials)
    plotted = [t for t in trials if metric(t, RETRIEVAL) is not None and metric(t, y_name) is not None]
    if not plotted:
        return None
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.add_subplot()
    for index, (experiment, group) in enumerate(_by_experiment(plotted).items()):
        xs, ys = [metric(t, RETRIEVAL) for t in group], [metric(t, y_name) for t in group]
        axes.scatter(xs, ys, marker=MARKERS[index % len(MARKERS)], color=f"C{index % COLOURS}",
                     label=experiment or MISSING)
        for trial, x, y in zip(group, xs, ys, strict=True):
            _name_point(axes, _label(trial), x, y)
    axes.set_xlabel(AXIS_LABELS[RETRIEVAL])
    axes.set_ylabel(AXIS_LABELS[y_name])
    axes.legend(title="experiment", fontsize="small")
    axes.grid(alpha=GRID_ALPHA)
    left_out = len(trials) - len(plotted)
    note = f"\n{left_out} trial(s) without both scores left out" if left_out else ""
    axes.set_title(f"{y_name} vs {RETRIEVAL}{note}")
    return figure


@dataclass(frozen=True)
class CostPoint:
    label: str
    cost: float  # $ per query
    score: float  # the primary metric: quality_score, else answer_similarity


@dataclass(frozen=True)
class CostPoints:
    """The points of the cost plot; only costs above $0 have a place on its log axis."""

    measured: list[CostPoint]  # each trial at what the LLM that answered charged
    estimated: list[CostPoint]  # the best trial's answers priced for each priced LLM, at the best trial's score
    best_trial: str | None  # label of the trial the estimates come from
    left_out: list[str]  # labels of the points at $0 (the extractive generator, a local LLM)


def cost_points(trials: Sequence[Trial]) -> CostPoints:
    """Measured cost of each trial and, as the reference's cost analysis, the best trial priced per LLM."""
    y_name = primary_metric(trials)
    scored = [t for t in trials if metric(t, y_name) is not None]
    llms = Counter(_params(t).get("llm") for t in scored)
    charged = [(t, metric(t, COST)) for t in scored if metric(t, COST) is not None]
    best = next((t for t in sort_trials(scored) if priced_costs(t)), None)
    estimated = [CostPoint(name, cost, metric(best, y_name)) for name, cost in priced_costs(best).items()] if best else []
    return CostPoints(
        measured=[CostPoint(_cost_label(t, llms), cost, metric(t, y_name)) for t, cost in charged if cost > 0],
        estimated=[p for p in estimated if p.cost > 0],
        best_trial=_label(best) if best else None,
        left_out=[*(_answering_llm(t) for t, cost in charged if cost <= 0), *(p.label for p in estimated if p.cost <= 0)],
    )


def _answering_llm(trial: Trial) -> str:
    """The LLM that answered, or the trial label when its space did not name one."""
    llm = _params(trial).get("llm")
    return _label(trial) if llm is None else str(llm)


def _cost_label(trial: Trial, llms: Counter) -> str:
    """The LLM that answered; with the trial label too when several trials used that LLM."""
    llm = _params(trial).get("llm")
    return _answering_llm(trial) if llm is None or llms[llm] == 1 else f"{llm} · {_label(trial)}"


def cost_vs_quality_figure(trials: Sequence[Trial]) -> Figure | None:
    """Cost per query (log x axis) against quality (or answer similarity), each point named by its LLM; points at
    $0 are left out and named in the title. None when no point costs anything."""
    y_name = primary_metric(trials)
    points = cost_points(trials)
    if not points.measured and not points.estimated:
        return None
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.add_subplot()
    if points.measured:
        axes.scatter([p.cost for p in points.measured], [p.score for p in points.measured], marker="o",
                     color=MEASURED_COLOUR, label="measured: the LLM that answered")
    if points.estimated:
        axes.scatter([p.cost for p in points.estimated], [p.score for p in points.estimated], marker="D",
                     facecolors="none", edgecolors=ESTIMATED_COLOUR,
                     label=f"estimated: trial {points.best_trial} priced per LLM (its {y_name})")
    for point in (*points.measured, *points.estimated):
        _name_point(axes, point.label, point.cost, point.score)
    axes.set_xscale("log")
    axes.set_xlabel(f"{COST} ($, log scale)")
    axes.set_ylabel(AXIS_LABELS[y_name])
    axes.legend(fontsize="small")
    axes.grid(alpha=GRID_ALPHA, which="both")
    axes.set_title(f"Cost per query vs {y_name}{_left_out_note(points.left_out)}")
    return figure


def _left_out_note(labels: Sequence[str]) -> str:
    if not labels:
        return ""
    counts = Counter(labels)  # ten extractive trials read "extractive ×10"
    names = [name if count == 1 else f"{name} ×{count}" for name, count in counts.items()]
    named = ", ".join(names[:MAX_NAMED_LEFT_OUT]) + (", …" if len(names) > MAX_NAMED_LEFT_OUT else "")
    return f"\n{len(labels)} point(s) at $0 left out (no place on a log axis): {named}"


@dataclass(frozen=True)
class Sweep:
    parameter: str
    trials: list[Trial]  # the trials that differ only in that parameter


def one_parameter_sweeps(trials: Sequence[Trial]) -> dict[str, list[Sweep]]:
    """experiment → the parameters it sweeps, each with the trials that differ only in it.

    A parameter is swept when exactly one set of the experiment's trials holds every other
    varied parameter fixed (or unset) while it takes two or more values: an experiment that
    varies one parameter, or a `sweeps:` space varying several one at a time. A grid has such
    a set for every value of the other parameters, so it is no sweep (parallel coordinates show it).
    """
    found = {}
    for experiment, group in _by_experiment(trials).items():
        varied = varied_params(group)
        sweeps = [s for s in (_sweep_of(name, group, varied) for name in varied) if s is not None]
        if sweeps:
            found[experiment] = sweeps
    return found


def _sweep_of(parameter: str, trials: Sequence[Trial], varied: Sequence[str]) -> Sweep | None:
    others = [n for n in varied if n != parameter]
    slices: dict[tuple, list[Trial]] = {}
    for trial in trials:
        if parameter in _params(trial):
            slices.setdefault(tuple(_setting_key(trial, n) for n in others), []).append(trial)
    swept = [s for s in slices.values() if len({_setting_key(t, parameter) for t in s}) > 1]
    return Sweep(parameter, swept[0]) if len(swept) == 1 else None


def sweep_figure(
    experiment: str,
    sweeps: Sequence[Sweep],
    reference: Mapping[str, Sequence[tuple[Any, float]]] | None = None,
) -> Figure | None:
    """One panel per swept parameter: retrieval_score and answer_similarity (and quality_score on its own axis)
    against the parameter's values, means where values repeat; `reference` points beside retrieval_score."""
    panels = [s for s in sweeps if any(metric(t, m) is not None for t in s.trials for m in (*SWEEP_METRICS, QUALITY))]
    if not panels:
        return None
    width, height = SWEEP_PANEL_SIZE
    figure = Figure(figsize=(width * len(panels), height))
    for axes, sweep in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        _draw_sweep(axes, sweep, (reference or {}).get(sweep.parameter, ()))
    figure.suptitle(f"{experiment or MISSING}: one parameter at a time")
    return figure


def _draw_sweep(axes: Axes, sweep: Sweep, reference: Sequence[tuple[Any, float]]) -> None:
    values = [_params(t)[sweep.parameter] for t in sweep.trials]
    reference = [(v, s) for v, s in reference if _finite_number(s) is not None]
    if all(_is_numeric(v) for v in values):
        position = _param_number
        reference = [(v, s) for v, s in reference if _is_numeric(v)]
    else:
        categories = _category_order([*values, *(v for v, _ in reference)])
        codes = {_param_key(c): code for code, c in enumerate(categories)}

        def position(value: Any) -> float:
            return codes[_param_key(value)]

        axes.set_xticks(range(len(categories)), [_format_param(c) for c in categories])
    for index, name in enumerate(SWEEP_METRICS):
        xs, ys = _means_by_position(sweep, name, position)
        if xs:
            axes.plot(xs, ys, marker=MARKERS[index], color=f"C{index}", label=name)
    if reference:
        axes.scatter([position(v) for v, _ in reference], [s for _, s in reference], marker="x",
                     color=REFERENCE_COLOUR, zorder=REFERENCE_ZORDER, label=f"reference {RETRIEVAL}")
    handles, labels = axes.get_legend_handles_labels()
    xs, ys = _means_by_position(sweep, QUALITY, position)
    if xs:
        quality_axes = axes.twinx()
        quality_axes.plot(xs, ys, marker="s", linestyle="--", color=QUALITY_COLOUR, label=QUALITY)
        quality_axes.set_ylabel(AXIS_LABELS[QUALITY])
        more_handles, more_labels = quality_axes.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels, fontsize="small")
    axes.set_xlabel(sweep.parameter)
    axes.set_ylabel("score (0–1)")
    axes.grid(alpha=GRID_ALPHA)
    axes.set_title(sweep.parameter)


def _means_by_position(
    sweep: Sweep, name: str, position: Callable[[Any], float]
) -> tuple[list[float], list[float]]:
    """x positions in order, and the metric's mean over the trials at each (a repeated value is one point)."""
    scores: dict[float, list[float]] = {}
    for trial in sweep.trials:
        score = metric(trial, name)
        if score is not None:
            scores.setdefault(position(_params(trial)[sweep.parameter]), []).append(score)
    xs = sorted(scores)
    return xs, [sum(scores[x]) / len(scores[x]) for x in xs]


def parallel_coordinates_figure(trials: Sequence[Trial]) -> go.Figure | None:
    """One axis per varied parameter (text and booleans as coded categories) and per key metric, one line per
    trial, coloured by quality_score (else answer_similarity). None when there is no axis.

    plotly draws a missing value as 0 (plotly.js#4341), so a metric axis needs the value from every line: trials
    with no key metric at all (a failed run) are left out, and so are the metrics some of the others lack.
    """
    lines = [t for t in trials if any(metric(t, m) is not None for m in KEY_METRICS)] or list(trials)
    shown = [m for m in KEY_METRICS if lines and all(metric(t, m) is not None for t in lines)]
    dimensions = [_param_dimension(name, lines) for name in varied_params(lines)]
    dimensions += [{"label": METRIC_LABELS.get(m, m), "values": [metric(t, m) for t in lines]} for m in shown]
    if not dimensions:
        return None
    colour = next((m for m in (primary_metric(lines), ANSWER_SIMILARITY, RETRIEVAL) if m in shown), None)
    line = {} if colour is None else {
        "color": [metric(t, colour) for t in lines], "colorscale": COLOURSCALE, "showscale": True,
        "colorbar": {"title": {"text": METRIC_LABELS[colour]}},
    }
    figure = go.Figure(go.Parcoords(dimensions=dimensions, line=line))
    title = f"{len(lines)} trial(s), coloured by {METRIC_LABELS[colour] if colour else 'nothing'}"
    figure.update_layout(title={"text": title + _coordinates_note(trials, lines, shown)})
    return figure


def _coordinates_note(trials: Sequence[Trial], lines: Sequence[Trial], shown: Sequence[str]) -> str:
    partial = [m for m in KEY_METRICS if m not in shown and any(metric(t, m) is not None for t in lines)]
    notes = ([f"{len(trials) - len(lines)} trial(s) without metrics left out"] if len(lines) < len(trials) else [])
    notes += [f"left out, missing in some trials: {', '.join(partial)}"] if partial else []
    return "".join(f"<br><sub>{note}</sub>" for note in notes)


def _param_dimension(name: str, trials: Sequence[Trial]) -> dict[str, Any]:
    """Numbers as they are; anything else, or numbers some trials leave unset, as coded categories."""
    given = [_params(t)[name] for t in trials if name in _params(t)]
    if len(given) == len(trials) and all(_is_numeric(v) for v in given):
        return {"label": name, "values": [_param_number(v) for v in given]}
    categories = _category_order(given)
    codes = {_param_key(c): code for code, c in enumerate(categories)}
    unset_code = len(categories)  # after the values: "(not set)" is no value to order
    ticks = [_format_param(c) for c in categories] + ([NOT_SET] if len(given) < len(trials) else [])
    values = [codes[_param_key(_params(t)[name])] if name in _params(t) else unset_code for t in trials]
    return {"label": name, "values": values, "tickvals": list(range(len(ticks))), "ticktext": ticks}


# ------------------------------------------------------------------ helpers


def _is_numeric(value: Any) -> bool:
    return not isinstance(value, bool) and _param_number(value) is not None


def _setting_key(trial: Trial, name: str) -> tuple[str, Any]:
    """`_param_key` of the trial's value, with its own key for a parameter the trial leaves unset."""
    params = _params(trial)
    return _param_key(params[name]) if name in params else ("unset", "")


def _by_experiment(trials: Iterable[Trial]) -> dict[str, list[Trial]]:
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(_experiment(trial), []).append(trial)
    return groups


def _name_point(axes: Axes, text: str, x: float, y: float) -> None:
    axes.annotate(text, (x, y), xytext=POINT_LABEL_OFFSET, textcoords="offset points",
                  fontsize=POINT_LABEL_FONT_SIZE)


def _sweep_file(experiment: str, used: set[str]) -> str:
    """sweep-<experiment>.png, the name made safe for a file and unique among the sweeps written."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment).strip("-.") or "experiment"
    name, copy = stem, 1
    while name in used:
        copy += 1
        name = f"{stem}-{copy}"
    used.add(name)
    return SWEEP_FILE.format(experiment=name)
