"""A structurally invalid file still gets its cross-field problems reported in the same pass."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from llem_cli.cli import cli


def test_compose_and_backend_problems_reported_alongside_structural_ones(tmp_path: Path) -> None:
    campaign = tmp_path / "c.yaml"
    campaign.write_text(
        "name: x\n"
        "compose: missing.yml\n"
        "backends:\n"
        "  a: {command: [run]}\n"
        "grid:\n"
        "  backend: [a, nope]\n"
        "  n: [1]\n"
        "execution: {cycles: 0}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(campaign)])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines == [
        f"{campaign}:2:10: compose: compose file not found: {tmp_path}/missing.yml "
        "(paths are relative to the campaign file)",
        f"{campaign}:6:16: grid.backend[1]: 'nope' names no backend (backends: a)",
        f"{campaign}:8:21: execution.cycles: input should be greater than or equal to 1",
    ]
