"""``llem init``'s compose files read by Docker Compose itself (``config -q``: no image, no GPU).

The rest of init (what it writes, overwrites, validates) needs no engine:
tests/unit/test_init_templates.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.templates import BACKENDS, SERVING

pytestmark = pytest.mark.docker


def compose_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "compose", "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_generated_compose_passes_compose_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    args = [arg for name in BACKENDS for arg in ("--backend", name)]
    result = CliRunner().invoke(cli, ["init", *args, "--compose", str(path)])
    assert result.exit_code == 0, result.output
    done = compose_config(tmp_path / "c.compose.yml")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_compose_written_without_being_asked_passes_compose_config(
    backend: str, tmp_path: Path
) -> None:
    """No compose/ folder around (a pip install): init writes one, and Compose accepts it."""
    path = tmp_path / "c.yaml"
    result = CliRunner().invoke(cli, ["init", "--backend", backend, str(path)])
    assert result.exit_code == 0, result.output
    done = compose_config(tmp_path / "c.compose.yml")
    assert done.returncode == 0, done.stderr


def test_serving_campaign_compose_passes_compose_config(tmp_path: Path) -> None:
    """`llem init --serve` writes the engines' own services (their servers replace the
    keep-alive at run time): Compose accepts the file, and the scripts folder it mounts."""
    path = tmp_path / "s.yaml"
    args = [arg for name in SERVING for arg in ("--backend", name)]
    result = CliRunner().invoke(cli, ["init", "--serve", *args, "--compose", str(path)])
    assert result.exit_code == 0, result.output
    done = compose_config(tmp_path / "s.compose.yml")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "scripts" / "llem_trtllm_serve.yml").is_file()
