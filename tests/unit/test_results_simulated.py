"""``llem results`` says, above its table, when the figures come from the simulated GPU."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.commands.results import SIMULATED_BANNER
from llem_testkit.rundirs import sample_run


def table(run_dir: Path) -> str:
    result = CliRunner().invoke(cli, ["results", str(run_dir)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_simulated_records_get_the_banner_before_the_table(tmp_path: Path) -> None:
    out = table(sample_run(tmp_path / "results", configs=2, simulated=True))
    assert SIMULATED_BANNER in out
    assert out.index(SIMULATED_BANNER) < out.index("energy_j")


def test_measured_records_get_no_banner(tmp_path: Path) -> None:
    out = table(sample_run(tmp_path / "results", configs=2, simulated=False))
    assert "SIMULATED" not in out
    assert "energy_j" in out
