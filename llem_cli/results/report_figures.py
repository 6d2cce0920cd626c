"""The figures of ``llem report``, drawn with matplotlib (Agg, no pyplot, no display).

matplotlib is imported inside the functions here, and this module only by
:mod:`llem_cli.commands.report` when it runs: no other command pays for it at start-up
(``tests/unit/test_import_weight.py``). Every figure is deterministic: fixed colours in
backend order, ``svg.hashsalt`` per figure (so the SVG's internal ids are the same on every
run, and differ between two figures inlined into one page), no date in the metadata.

Each configuration's point (and bar) carries an SVG ``id`` (matplotlib's ``gid``):
``pt-<run>-<config>`` in the scatter, ``bar-<run>-<config>`` in the energy figure;
the Pareto front's line is ``pareto-front``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llem_cli.results.report_data import ConfigPoint, ReportData, energy_groups, svg_id

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: matplotlib's "tab10", in the order backends first appear in the report
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
#: one marker per run (cycled), so several runs' points tell apart without colour
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
FIGURE_FORMATS = ("svg", "png", "pdf")


@dataclass
class DrawnFigure:
    """One figure: a file-friendly ``name``, its ``title`` and ``caption`` (what it shows, and
    why an axis falls back or a configuration is left out), and the matplotlib figure."""

    name: str
    title: str
    caption: list[str]
    figure: Figure


def point_gid(point: ConfigPoint, kind: str = "pt") -> str:
    """The SVG id of a configuration's point (``pt``) or bar (``bar``)."""
    return svg_id(kind, point.run_id, point.config_id)


def backend_colours(points: Sequence[ConfigPoint]) -> dict[str, str]:
    """A colour per backend, in the order backends first appear."""
    colours: dict[str, str] = {}
    for point in points:
        if point.backend not in colours:
            colours[point.backend] = PALETTE[len(colours) % len(PALETTE)]
    return colours


def run_markers(data: ReportData) -> dict[str, str]:
    """A marker per run, in the order runs were given."""
    return {run.run_id: MARKERS[i % len(MARKERS)] for i, run in enumerate(data.runs)}


def _err(mean: float | None, ci: tuple[float, float] | None) -> list[list[float]] | None:
    if mean is None or ci is None:
        return None
    return [[max(mean - ci[0], 0.0)], [max(ci[1] - mean, 0.0)]]


def number_of(data: ReportData) -> dict[str, int]:
    """The number each configuration carries in the figures and tables (1-based)."""
    return {p.point_id: i for i, p in enumerate(data.points, start=1)}


def scatter_figure(data: ReportData) -> DrawnFigure:
    """Energy (per token) against throughput, a point per configuration with its intervals
    on both axes, one colour per backend, one marker per run, the Pareto front as a step."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = data.plotted
    colours = backend_colours(data.points)
    markers = run_markers(data)
    numbers = number_of(data)
    several = len(data.runs) > 1
    fig = Figure(figsize=(8.0, 5.2), layout="constrained")
    ax = fig.add_subplot()
    for point in points:
        x, y = point.throughput.mean, point.energy.mean
        assert x is not None and y is not None
        xerr, yerr = _err(x, point.throughput.ci), _err(y, point.energy.ci)
        colour = colours[point.backend]
        if xerr or yerr:
            bars = ax.errorbar(
                [x],
                [y],
                xerr=xerr,
                yerr=yerr,
                fmt="none",
                ecolor=colour,
                elinewidth=1.0,
                capsize=3,
                alpha=0.8,
            )
            for k, artist in enumerate(bars.get_children()):  # ids stay unique in the page
                artist.set_gid(f"{point_gid(point, 'ci')}-{k}")
        (line,) = ax.plot(
            [x],
            [y],
            linestyle="none",
            marker=markers[point.run_id],
            markersize=7,
            color=colour,
            markeredgecolor="black",
            markeredgewidth=0.5,
        )
        line.set_gid(point_gid(point))
        ax.annotate(
            str(numbers[point.point_id]),
            (x, y),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=8,
        )
    if data.front:
        front = sorted(data.front, key=lambda p: p.throughput.mean or 0.0)
        xs = [p.throughput.mean or 0.0 for p in front]  # plotted: never None
        ys = [p.energy.mean or 0.0 for p in front]
        (line,) = ax.plot(
            xs,
            ys,
            drawstyle="steps-post" if len(front) > 1 else "default",
            linestyle="--",
            color="black",
            linewidth=1.0,
            marker="o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="black",
            label="Pareto front",
        )
        line.set_gid("pareto-front")
    ax.set_xlabel(data.throughput_axis.label)
    ax.set_ylabel(data.energy_axis.label)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    handles: list[Any] = [
        Line2D([], [], linestyle="none", marker="o", color=c, label=b)
        for b, c in colours.items()
        if any(p.backend == b for p in points)
    ]
    if several:
        handles += [
            Line2D([], [], linestyle="none", marker=m, color="grey", label=f"run {r}")
            for r, m in markers.items()
        ]
    if data.front:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="--",
                color="black",
                marker="o",
                markerfacecolor="none",
                label="Pareto front",
            )
        )
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    caption = [
        f"{data.energy_axis.label} against {data.throughput_axis.label}: one point per "
        "configuration (mean of its ok experiments; number as in the table), bars the 95 % "
        "interval (none below 3 experiments or for a constant). Lower and further right is "
        "better; the dashed line joins the Pareto front (no other configuration has both "
        "less energy and more throughput).",
    ]
    for axis in (data.energy_axis, data.throughput_axis):
        if axis.note:
            caption.append(f"Falls back: {axis.note}.")
    for point, why in data.left_out:
        label = point.label(with_run=several)
        caption.append(f"Not drawn: #{numbers[point.point_id]} {label} ({why}).")
    return DrawnFigure("energy-vs-throughput", "Energy against throughput", caption, fig)


def energy_figure(data: ReportData) -> DrawnFigure:
    """Energy per configuration (the energy axis' quantity) with its interval, grouped by
    backend, power limit and lane GPU (a horizontal bar each)."""
    from matplotlib.figure import Figure

    groups = energy_groups(data.points)
    colours = backend_colours(data.points)
    numbers = number_of(data)
    several = len(data.runs) > 1
    rows: list[tuple[str, ConfigPoint | None]] = []
    for name, members in groups:
        rows.append((name, None))
        rows.extend((f"#{numbers[p.point_id]} {p.label(with_run=several)}", p) for p in members)
    height = max(2.0, 0.32 * len(rows) + 1.2)
    fig = Figure(figsize=(8.0, height), layout="constrained")
    ax = fig.add_subplot()
    labels: list[str] = []
    for i, (label, point) in enumerate(rows):
        labels.append(label)
        if point is None:
            continue
        mean = point.energy.mean
        assert mean is not None
        xerr = _err(mean, point.energy.ci)
        bar = ax.barh(
            [i],
            [mean],
            xerr=xerr,
            color=colours[point.backend],
            height=0.7,
            error_kw={"elinewidth": 1.0, "capsize": 3},
        )
        for patch in bar.patches:
            patch.set_gid(point_gid(point, "bar"))
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    for tick, (_, point) in zip(ax.get_yticklabels(), rows, strict=True):
        if point is None:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlabel(data.energy_axis.label)
    ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
    caption = [
        f"{data.energy_axis.label} per configuration (mean of its ok experiments), bars the "
        "95 % interval; grouped by backend"
        + (", power limit" if any(p.power_limit_w is not None for p in data.points) else "")
        + (", lane GPU" if any(p.gpu for p in data.points) else "")
        + " (bold rows)."
    ]
    if data.energy_axis.note:
        caption.append(f"Falls back: {data.energy_axis.note}.")
    missing = [p for p in data.points if p.energy.mean is None]
    for point in missing:
        why = point.why_missing.get("energy") or point.why_missing.get("all") or "no value"
        caption.append(
            f"Not drawn: #{numbers[point.point_id]} {point.label(with_run=several)} ({why})."
        )
    return DrawnFigure("energy-per-configuration", "Energy per configuration", caption, fig)


def draw_figures(data: ReportData) -> list[DrawnFigure]:
    """The report's figures; none when no configuration has a value to draw."""
    figures = []
    if data.plotted:
        figures.append(scatter_figure(data))
    if any(p.energy.mean is not None for p in data.points):
        figures.append(energy_figure(data))
    return figures


def _rc(name: str, fonttype: str) -> Any:  # matplotlib types its keys as one long Literal
    return {"svg.hashsalt": f"llem-{name}", "svg.fonttype": fonttype, "svg.image_inline": True}


def inline_svg(drawn: DrawnFigure) -> str:
    """The figure as an ``<svg>`` element for an HTML page: text as text (searchable, small),
    no XML prolog, no DOCTYPE, no metadata block, no namespace declarations (HTML's parser
    knows ``svg`` and ``xlink:href``), so the page holds no address at all."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_rc(drawn.name, "none")):
        drawn.figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # an <svg> inside HTML needs no namespace declarations: the page then names no address
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S).strip()


def figure_bytes(drawn: DrawnFigure, fmt: str) -> bytes:
    """The figure as a file of format ``fmt`` (one of :data:`FIGURE_FORMATS`): SVG with
    text as paths (looks the same without the fonts), PNG at 150 dpi, PDF; no dates."""
    import matplotlib

    metadata: dict[str, Any] = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})
    buffer = io.BytesIO()
    with matplotlib.rc_context(_rc(drawn.name, "path")):
        drawn.figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
    return buffer.getvalue()
