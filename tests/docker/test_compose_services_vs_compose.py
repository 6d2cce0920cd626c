"""The services ``llem validate`` reads from a compose file (PyYAML, no engine) are those Docker
Compose reads (``docker compose config --services``): anchors, merge keys, several documents.

The rest of validate's compose checks needs no engine: tests/unit/test_validate_compose_services.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llem_cli.campaign.compose_services import parse_compose_services

pytestmark = pytest.mark.docker


def test_the_services_read_are_those_compose_reads(tmp_path: Path) -> None:
    compose = tmp_path / "c.yml"
    compose.write_text(
        "x-old: &base {image: alpine}\n"
        "x-base: &base {image: busybox, network_mode: none}\n"
        "services:\n"
        "  <<: {merged: *base}\n"
        "  on: *base\n"
        "  plain: *base\n"
        "---\n"
        "services:\n"
        "  second: *base\n"
    )
    done = subprocess.run(
        ["docker", "compose", "-f", str(compose), "config", "--services"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ours = parse_compose_services(compose.read_text())
    assert sorted(ours.services) == sorted(done.stdout.split())
