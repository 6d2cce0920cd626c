"""``llem report``'s HTML in a real browser: headless Chromium, offline.

Needs no engine, but is marked ``docker`` (the folder rule of tests/conftest.py) so it runs with
the end-to-end suite; ``make test`` installs Chromium first (scripts/chromium.sh). No Chromium:
skip here, fail under CI (``LLEM_REQUIRE_DOCKER``, as for the engine).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_testkit.browser import colour_stats, find_chromium, open_offline
from llem_testkit.engine import skip_unless_possible
from llem_testkit.rundirs import sample_run

pytestmark = pytest.mark.docker

CONFIGS = 4


@pytest.fixture(scope="module")
def chromium() -> str:
    browser = find_chromium()
    if browser is None:
        skip_unless_possible("no chromium on PATH (bash scripts/chromium.sh installs it)")
    return browser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report")
    run_dir = sample_run(base / "results", configs=CONFIGS, cycles=3, simulated=True)
    out = base / "report.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    return run_dir, out


def test_html_names_nothing_outside_the_file(report: tuple[Path, Path]) -> None:
    html = report[1].read_text()
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", html, re.I)
    external += re.findall(r"""url\(\s*["']?((?:https?:)?//[^)"']+)""", html, re.I)
    external += re.findall(r"""@import\s+["']((?:https?:)?//[^"']+)""", html, re.I)
    assert external == []


def test_chromium_draws_the_report_offline(
    chromium: str, report: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, html = report
    view = open_offline(chromium, html, tmp_path / "browser")
    # nothing the page asked for left the file
    assert view.requests == []
    # not blank: a drawn figure has many colours (antialiasing) and a fair share of ink
    colours, inked = colour_stats(view.screenshot)
    assert colours >= 50, f"only {colours} distinct colours: blank page?"
    assert inked >= 0.005, f"only {inked:.2%} of the page is not white"
    # every configuration drawn, once per figure: its point is the element with the id
    # pt-<run_id>-<config_id> (llem report gives each point one; its error bars are ci-...)
    ids = re.findall(r"""\bid\s*=\s*["']([^"']+)["']""", view.dom)
    run_id = run_dir.name
    counts = {f"cfg{i:03d}": ids.count(f"pt-{run_id}-cfg{i:03d}") for i in range(CONFIGS)}
    assert all(n >= 1 for n in counts.values()), f"configurations not drawn: {counts}"
    assert len(set(counts.values())) == 1, f"configurations drawn unevenly: {counts}"
    # the simulated GPU is said on the page
    assert "simulated" in view.dom.lower()
