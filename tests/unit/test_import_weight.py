"""What reading a run imports: ``llem status`` and ``llem results`` never load pydantic.

The campaign model (pydantic, ~10 MiB, ~0.1 s) is for reading campaign files; reading a run's
journal needs only names (`campaign/names.py`). A name imported from the model once made
`llem results --format json` of 10k records 7 % slower and 24 % larger (bench_against_revision).
"""

from __future__ import annotations

import subprocess
import sys


def loaded_after(*modules: str) -> set[str]:
    code = f"import sys; import {', '.join(modules)}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_reading_a_run_does_not_load_the_campaign_model() -> None:
    loaded = loaded_after(
        "llem_cli.commands.results", "llem_cli.commands.status", "llem_cli.results.load"
    )
    assert "llem_cli.runs.state" in loaded  # the check would pass vacuously otherwise
    assert "pydantic" not in loaded and "llem_cli.campaign.model" not in loaded


def test_matplotlib_is_loaded_only_when_a_report_is_drawn() -> None:
    # llem report's figures need matplotlib (~0.3 s, numpy with it); no command's start-up,
    # not even llem report's own data and page, may load it
    loaded = loaded_after(
        "llem_cli.cli",
        "llem_cli.commands.report",
        "llem_cli.results.report_data",
        "llem_cli.results.report_figures",
        "llem_cli.results.report_html",
    )
    assert "llem_cli.results.report_data" in loaded
    assert "matplotlib" not in loaded and "numpy" not in loaded
