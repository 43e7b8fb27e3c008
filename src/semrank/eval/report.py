"""A Markdown evaluation report with matplotlib plots (PNG files next to it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from semrank._files import written_whole
from semrank.eval.metrics import Evaluation, PairedComparison

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT = "report.md"
DELTA_PLOT = "per_query_delta.png"
DEPTH_PLOT = "depth_curve.png"


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything a report shows; only ``first_stage`` is required."""

    title: str
    first_stage: Evaluation
    reranked: Evaluation | None = None
    comparisons: Sequence[PairedComparison] = ()
    depth_curve: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)  # e.g. model, files, pairs/s


def format_number(value: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def format_p_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _summary_table(data: ReportData) -> list[str]:
    by_measure = {c.measure: c for c in data.comparisons}
    if data.reranked is None:
        lines = ["| measure | first_stage |", "|---|---:|"]
        lines += [f"| {m} | {format_number(v)} |" for m, v in data.first_stage.aggregate.items()]
        return lines
    lines = [
        "| measure | first_stage | reranked | Δ | p (paired t) | wins / ties / losses |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for measure, base in data.first_stage.aggregate.items():
        new = data.reranked.aggregate.get(measure, math.nan)
        c = by_measure.get(measure)
        test = (
            f"{format_p_value(c.p_value)} | {c.wins} / {c.ties} / {c.losses}" if c else "n/a | n/a"
        )
        values = f"{format_number(base)} | {format_number(new)} | {new - base:+.4f}"
        lines.append(f"| {measure} | {values} | {test} |")
    return lines


def _depth_table(curve: Mapping[int, Mapping[str, float]]) -> list[str]:
    measures = list(next(iter(curve.values())).keys())
    lines = ["| depth | " + " | ".join(measures) + " |", "|---:|" + "---:|" * len(measures)]
    for depth, values in curve.items():
        lines.append(
            f"| {depth} | " + " | ".join(format_number(values[m]) for m in measures) + " |"
        )
    return lines


def _figure(width: float, height: float) -> Figure:
    """A figure drawn off pyplot: switching pyplot's backend (matplotlib.use("Agg")) stopped a
    notebook's later plt.show() from drawing anything, and pyplot keeps every figure it made."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _plot_deltas(data: ReportData, measure: str, path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    assert data.reranked is not None
    before, after = data.first_stage.per_query[measure], data.reranked.per_query[measure]
    deltas = sorted((after[q] - before[q], q) for q in before.keys() & after.keys())
    # A bar per query up to ~200 queries; wider would be tens of thousands of pixels (MS MARCO
    # dev: 7,000 queries), so past that the sorted changes are drawn as a filled curve.
    figure = _figure(min(max(6.0, 0.18 * len(deltas)), 36.0), 3.5)
    axes = figure.subplots()
    values = [d for d, _q in deltas]
    if len(deltas) <= 200:
        colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "tab:gray" for d in values]
        axes.bar(range(len(deltas)), values, color=colors)
    else:
        positions = range(len(values))
        axes.fill_between(positions, values, where=[d > 0 for d in values], color="tab:green")
        axes.fill_between(positions, values, where=[d < 0 for d in values], color="tab:red")
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # queries are counted: no 0.4
    axes.set_xlabel("query (sorted by change)")
    axes.set_ylabel(f"Δ {measure} (reranked - first stage)")
    axes.set_title(f"Per-query change in {measure}")
    figure.tight_layout()
    _save_png(figure, path)


def _curve_measures(data: ReportData) -> list[str]:
    """The measures the depth plot draws: those between 0 and 1. Counts (NumRet: 1,000 at
    depth 1,000) shared the axis and flattened every other line to the bottom."""
    return [measure for measure in data.first_stage.aggregate if not measure.startswith("Num")]


def _plot_depth_curve(data: ReportData, path: Path) -> None:
    depths = list(data.depth_curve)
    figure = _figure(6.0, 3.8)
    axes = figure.subplots()
    for measure in _curve_measures(data):
        values = [data.depth_curve[d].get(measure, math.nan) for d in depths]
        (line,) = axes.plot(depths, values, marker="o", label=measure)
        first = data.first_stage.aggregate[measure]
        axes.axhline(first, color=line.get_color(), linestyle=":", linewidth=0.9)
    axes.set_xscale("log")
    axes.set_xticks(depths, [str(d) for d in depths])
    axes.set_xlabel("re-rank depth (dotted: first stage)")
    axes.set_ylabel("value")
    axes.set_title("Metrics vs re-rank depth")
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    _save_png(figure, path)


def _save_png(figure: Figure, path: Path) -> None:
    with written_whole(path) as partial:  # by its name, .partial, matplotlib would guess no PNG
        figure.savefig(partial, dpi=110, format="png")


def write_report(data: ReportData, directory: Path | str) -> Path:
    """Write ``report.md`` (and its PNG plots) into ``directory``; returns the report's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# {data.title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in data.details.items()]
    lines += ["", f"Queries evaluated: {data.first_stage.query_count}", ""]
    lines += _summary_table(data)
    # An earlier report's plots are not this one's; nor is its report.md, which a report
    # stopped halfway (Ctrl-C, SIGTERM) would leave beside this one's plots.
    for name in (REPORT, DELTA_PLOT, DEPTH_PLOT):
        (directory / name).unlink(missing_ok=True)
    if data.reranked is not None:
        per_query = data.reranked.per_query
        measure = "nDCG@10" if "nDCG@10" in per_query else next(iter(per_query))
        _plot_deltas(data, measure, directory / DELTA_PLOT)
        lines += ["", f"## Per-query change in {measure}", "", f"![per-query delta]({DELTA_PLOT})"]
    if data.depth_curve:
        lines += ["", "## Metrics vs re-rank depth", ""]
        if _curve_measures(data):
            _plot_depth_curve(data, directory / DEPTH_PLOT)
            lines += [f"![depth curve]({DEPTH_PLOT})", ""]
        lines += _depth_table(data.depth_curve)
    path = directory / REPORT
    with written_whole(path) as partial:
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
