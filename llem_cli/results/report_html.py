"""The page of ``llem report``: one self-contained HTML file (pure string building).

Self-contained means nothing is fetched: no script, no stylesheet or font link, no image
address; the figures are inline ``<svg>`` elements, the CSS an inline ``<style>`` (with a
print media query). The page holds no date or path of the machine that wrote it, so the
same runs give the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from llem_cli.results.report_data import ConfigPoint, ReportData, RunFacts, svg_id
from llem_cli.results.stats import Summary

SIMULATED_BANNER = "simulated GPU: these numbers are not measurements"
NO_OK_MESSAGE = "No experiment finished ok: there is nothing to draw."

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  max-width: 72rem; padding: 1rem 1.5rem 3rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
.runs { color: #555; margin-top: 0; }
.banner { background: #b00020; color: #fff; font-weight: bold; padding: 0.6rem 1rem;
  border-radius: 4px; margin: 1rem 0; }
.empty { background: #fff4d6; border: 1px solid #e0c060; padding: 0.6rem 1rem; }
figure { margin: 1rem 0; page-break-inside: avoid; break-inside: avoid; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #333; }
figcaption p { margin: 0.2rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: left;
  vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.front td:first-child { font-weight: bold; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 50%;
  margin-right: 0.3em; vertical-align: baseline; }
.note { color: #555; font-size: 0.85rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  .banner { border: 3px solid #b00020; color: #b00020; background: none; }
  h2 { page-break-after: avoid; break-after: avoid; }
  table, tr { page-break-inside: avoid; break-inside: avoid; }
}
"""


def esc(value: Any) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value), quote=True)


def num(value: float | None) -> str:
    """A number for a table: 4 significant digits, thousands grouped; ``—`` for none."""
    if value is None:
        return "—"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def interval(summary: Summary) -> str:
    """``low – high``, or why there is none (the stats module's note)."""
    ci = summary.ci
    if ci is None:
        return esc(summary.ci_note or "—")
    mark = "*" if summary.ci_low_clipped else ""
    return f"{num(ci[0])}{mark} – {num(ci[1])}"


def _title(data: ReportData) -> str:
    names = []
    for run in data.runs:
        if run.campaign and run.campaign not in names:
            names.append(run.campaign)
    return "llem report: " + (", ".join(names) if names else "runs")


def _params(point: ConfigPoint) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(point.params.items()) if k != "backend")


def _figure(name: str, title: str, svg: str, caption: Sequence[str]) -> str:
    paragraphs = "".join(f"<p>{esc(line)}</p>" for line in caption)
    return (
        f'<figure id="fig-{esc(name)}" data-figure="{esc(name)}">\n'
        f"<h3>{esc(title)}</h3>\n{svg}\n<figcaption>{paragraphs}</figcaption>\n</figure>"
    )


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _config_table(data: ReportData, colours: dict[str, str]) -> str:
    several = len(data.runs) > 1
    on_front = {p.point_id for p in data.front}
    head = ["#"] + (["run"] if several else []) + [
        "backend", "params", "config", "n ok / all",
        f"{data.energy_axis.label}: mean", "95 % interval",
        f"{data.throughput_axis.label}: mean", "95 % interval",
        "energy per experiment (J): mean", "95 % interval",
        "Pareto", "statuses", "flags",
    ]  # fmt: skip
    rows = []
    for i, p in enumerate(data.points, start=1):
        swatch = f'<span class="swatch" style="background:{colours.get(p.backend, "#999")}"></span>'
        cells = [f"<td>{i}</td>"]
        if several:
            cells.append(f"<td>{esc(p.run_id)}</td>")
        cells += [
            f"<td>{swatch}{esc(p.backend)}</td>",
            f"<td>{esc(_params(p))}</td>",
            f"<td><code>{esc(p.config_id)}</code></td>",
            f'<td class="num">{p.n_ok} / {sum(p.statuses.values())}</td>',
            f'<td class="num">{num(p.energy.mean)}</td>',
            f'<td class="num">{interval(p.energy)}</td>',
            f'<td class="num">{num(p.throughput.mean)}</td>',
            f'<td class="num">{interval(p.throughput)}</td>',
            f'<td class="num">{num(p.energy_j.mean)}</td>',
            f'<td class="num">{interval(p.energy_j)}</td>',
            f"<td>{'yes' if p.point_id in on_front else ''}</td>",
            f"<td>{esc(_statuses(p.statuses))}</td>",
            f"<td>{esc(', '.join(f'{k} ×{v}' for k, v in p.flags.items()))}</td>",
        ]
        cls = ' class="front"' if p.point_id in on_front else ""
        rows.append(
            f'<tr id="{esc(_row_id(p))}" data-config="{esc(p.point_id)}"{cls}>{"".join(cells)}</tr>'
        )
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    note = (
        '<p class="note">n: ok experiments of the configuration / all its records. '
        "Intervals: Student t, bootstrap from 10 experiments on; none below 3 experiments or "
        "for a constant; * lower bound clipped at 0.</p>"
    )
    return (
        f"<table><thead><tr>{header}</tr></thead><tbody>\n"
        + "\n".join(rows)
        + (f"\n</tbody></table>{note}")
    )


def _row_id(point: ConfigPoint) -> str:
    return svg_id("row", point.run_id, point.config_id)


def _front_list(data: ReportData) -> str:
    if not data.front:
        return "<p>No configuration has values on both axes: no front.</p>"
    several = len(data.runs) > 1
    numbers = {p.point_id: i for i, p in enumerate(data.points, start=1)}
    items = "".join(
        f'<li data-config="{esc(p.point_id)}">#{numbers[p.point_id]} '
        f"{esc(p.label(with_run=several))} (<code>{esc(p.config_id)}</code>): "
        f"{num(p.energy.mean)} {esc(_unit(data.energy_axis.label))}, "
        f"{num(p.throughput.mean)} {esc(_unit(data.throughput_axis.label))}</li>"
        for p in data.front
    )
    return (
        "<p>No other configuration has both lower energy and higher throughput than these "
        f"(by mean; lowest energy first):</p><ol>{items}</ol>"
    )


def _unit(label: str) -> str:
    """``energy per output token (J)`` -> ``J/output token``-ish short text for a list."""
    if "(" not in label:
        return label
    quantity, unit = label.rsplit("(", 1)
    unit = unit.rstrip(")")
    return f"{unit} ({quantity.strip()})"


def _run_facts(run: RunFacts) -> str:
    rows: list[tuple[str, str]] = [
        ("campaign", run.campaign or "unknown"),
        ("records", f"{run.records} ({_statuses(run.statuses) or 'none'})"),
        (
            "energy method (ok records)",
            ", ".join(f"{_method(k)} ×{v}" for k, v in run.methods.items()) or "no ok record",
        ),
        ("host GPUs (journal)", "; ".join(run.gpus) or "the journal names none"),
    ]
    if run.idle_baseline_w is None:
        rows.append(("idle baseline", "not measured (execution.idle_baseline not set)"))
    else:
        idle = ", ".join(f"GPU {k}: {num(v)} W" for k, v in sorted(run.idle_baseline_w.items()))
        rows.append(
            (
                "idle baseline",
                (idle or "no value") + (f" ({run.idle_note})" if run.idle_note else ""),
            )
        )
    if run.thermal_waits:
        rows.append(
            (
                "thermal gate",
                f"{run.thermal_waits} waits, {num(run.thermal_waited_s)} s in all, "
                f"{run.thermal_timeouts} timed out",
            )
        )
    else:
        rows.append(("thermal gate", "not used"))
    rows.append(("flags", ", ".join(f"{k} ×{v}" for k, v in run.flags.items()) or "none"))
    if run.simulated:
        rows.append(("simulated", f"{run.simulated} records say their GPU was simulated"))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    nulls = ""
    if run.null_reasons:
        items = "".join(
            f"<tr><td><code>{esc(name)}</code></td><td>{esc(why)}</td>"
            f'<td class="num">{count}</td></tr>'
            for (name, why), count in run.null_reasons.items()
        )
        nulls = (
            "<table><thead><tr><th>null field</th><th>reason</th><th>records</th></tr></thead>"
            f"<tbody>{items}</tbody></table>"
        )
    else:
        nulls = '<p class="note">No record left a measured field null.</p>'
    return (
        f'<section class="run" data-run="{esc(run.run_id)}"><h3>run {esc(run.run_id)}</h3>'
        f"<table><tbody>{body}</tbody></table>{nulls}</section>"
    )


def _method(name: str) -> str:
    return {
        "counter": "counter (NVML total energy)",
        "power_sampling": "sampling (integrated power)",
        "none": "none (energy null)",
    }.get(name, name)


def render_html(
    data: ReportData,
    figures: Sequence[tuple[str, str, str, Sequence[str]]],
    colours: dict[str, str],
) -> str:
    """The page: ``figures`` are ``(name, title, inline svg, caption lines)``; ``colours``
    the backend colours the figures used (the table's swatches)."""
    title = _title(data)
    run_line = ", ".join(
        f"{r.run_id}" + (f" ({r.campaign})" if r.campaign else "") for r in data.runs
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body>",
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="runs">runs: {esc(run_line)}</p></header>',
    ]
    if data.simulated:
        parts.append(
            f'<div class="banner" id="simulated" role="alert">{esc(SIMULATED_BANNER)}</div>'
        )
    if not data.has_ok:
        statuses = "; ".join(
            f"{r.run_id}: {_statuses(r.statuses) or 'no record'}" for r in data.runs
        )
        parts.append(
            f'<p class="empty" id="no-ok">{esc(NO_OK_MESSAGE)} Records: {esc(statuses)}.</p>'
        )
    if figures:
        parts.append("<h2>Figures</h2>")
        parts.extend(_figure(*fig) for fig in figures)
    if data.has_ok:
        parts.append('<h2 id="pareto">Pareto front</h2>')
        parts.append(_front_list(data))
    if data.points:
        parts.append('<h2 id="configurations">Configurations</h2>')
        parts.append(_config_table(data, colours))
    parts.append('<h2 id="measurement">Measurement</h2>')
    parts.extend(_run_facts(run) for run in data.runs)
    parts.append("</body></html>\n")
    return "\n".join(parts)
