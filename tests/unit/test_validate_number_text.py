"""``1e-5`` in a grid is text to YAML 1.1 (PyYAML): validate warns, with the spelling to use."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from llem_cli.cli import cli

CAMPAIGN = """\
name: exp
compose: compose.yml
backends:
  app:
    command: [echo, "{lr}"]
grid:
  lr: [1e-5, 0.001, "2e-3", 1.0e5, 1.0e-4]
experiments:
  - {lr: 5E+2}
"""


def test_number_like_text_is_a_warning_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text("services:\n  app: {image: busybox}\n")
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN)
    done = CliRunner().invoke(cli, ["--no-color", "validate", str(path)])
    assert done.exit_code == 0, done.output
    warnings = [line for line in done.output.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{path}:7:8: grid.lr[0]: warning: 1e-5 is read as text, not a number (YAML 1.1 wants "
        "a dot and a signed exponent: write 1.0e-5, or quote it to keep it as text)",
        f"{path}:7:29: grid.lr[3]: warning: 1.0e5 is read as text, not a number (YAML 1.1 "
        "wants a dot and a signed exponent: write 1.0e+5, or quote it to keep it as text)",
        f"{path}:9:10: experiments[0].lr: warning: 5E+2 is read as text, not a number (YAML 1.1 "
        "wants a dot and a signed exponent: write 5.0e+2, or quote it to keep it as text)",
    ]


def test_the_suggested_spellings_are_numbers_to_yaml() -> None:
    # what the warnings suggest must really load as floats, and the quoted form stays text
    assert yaml.safe_load("[1.0e-5, 1.0e+5, 5.0e+2, '2e-3']") == [1e-05, 100000.0, 500.0, "2e-3"]
