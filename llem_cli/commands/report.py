"""``llem report``: a self-contained HTML report (figures and tables) of one or more runs.

The data comes from :mod:`llem_cli.results.report_data` (pure), the figures from
:mod:`llem_cli.results.report_figures` (matplotlib, imported only here, when the command
runs), the page from :mod:`llem_cli.results.report_html`.
"""

from __future__ import annotations

from pathlib import Path

from llem_cli.atomic import atomic_write_bytes, atomic_write_text
from llem_cli.errors import UsageProblem
from llem_cli.output import Output
from llem_cli.results.load import load_run_records
from llem_cli.results.report_data import RunInput, build_report
from llem_cli.runs.journal_read import iter_events
from llem_cli.runs.resolve import campaign_of_run
from llem_cli.runs.shards import journal_paths

REPORT_NAME = "report.html"


def default_output(run_dirs: list[Path]) -> Path:
    """Where the report goes without ``-o``: ``<RUN_DIR>/report.html`` for one run (beside
    its data), ``./report.html`` for several."""
    if len(run_dirs) == 1 and run_dirs[0].is_dir():
        return run_dirs[0] / REPORT_NAME
    return Path(REPORT_NAME)


def _read_runs(run_dirs: list[Path]) -> list[RunInput]:
    runs: list[RunInput] = []
    seen: set[Path] = set()
    for path in run_dirs:
        if path.exists() and not path.is_dir() and path.suffix.lower() not in (".yaml", ".yml"):
            raise UsageProblem(
                f"{path}: not a run directory",
                hint="give <results>/<name>/<run_id> (see 'llem status') or a campaign file",
            )
        loaded = load_run_records(path)
        root = loaded.run.root.resolve()
        if root in seen:
            continue
        seen.add(root)
        telemetry = [
            e
            for journal in journal_paths(loaded.run)  # a sharded run: every shard's
            for e in iter_events(journal)
            if e.get("type") == "telemetry"
        ]
        runs.append(
            RunInput(
                run_id=loaded.run.run_id,
                campaign=campaign_of_run(loaded.run),
                records=loaded.records,
                telemetry=telemetry,
            )
        )
    return runs


def write_report(
    run_dirs: list[Path], *, output: Path | None, figures_dir: Path | None, out: Output
) -> int:
    """Write the HTML report of ``run_dirs`` (and with ``figures_dir`` each figure as SVG, PNG
    and PDF); exit 0, also when no experiment finished ok (the report says so)."""
    runs = _read_runs(run_dirs)
    data = build_report(runs)

    from llem_cli.results import report_figures as rf  # matplotlib: only when reporting
    from llem_cli.results.report_html import render_html

    drawn = rf.draw_figures(data)
    figures = [(d.name, d.title, rf.inline_svg(d), d.caption) for d in drawn]
    page = render_html(data, figures, rf.backend_colours(data.points))
    target = output or default_output(run_dirs)
    if target.is_dir():
        target = target / REPORT_NAME
    try:
        atomic_write_text(target, page)
        out.line(f"wrote {target}")
        if figures_dir is not None:
            for d in drawn:
                for fmt in rf.FIGURE_FORMATS:
                    path = figures_dir / f"{d.name}.{fmt}"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(path, rf.figure_bytes(d, fmt))
                    out.line(f"wrote {path}")
    except OSError as exc:
        raise UsageProblem(f"cannot write the report: {exc}") from exc
    if not data.has_ok:
        out.info("no experiment finished ok: the report says so and has no figures")
    elif data.simulated:
        out.warn("simulated GPU: these numbers are not measurements")
    return 0
