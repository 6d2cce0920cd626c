"""``llem doctor`` as the tests run it: a real process, its text and ``--json`` forms compared.

Shared by the doctor tests that need an engine (tests/docker/test_doctor.py) and those that do not
(tests/unit/test_doctor.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from llem_testkit import TEST_IMAGE

__all__ = ["APP", "both", "campaign_in", "checks", "doctor"]


#: a compose file with one service ``app`` on the test image
APP = f"services:\n  app: {{image: {TEST_IMAGE}, network_mode: none}}\n"


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``llem doctor ARGS`` as a process, ``env`` added to this one's environment."""
    return subprocess.run(
        [sys.executable, "-m", "llem_cli", "doctor", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def checks(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The checks of a ``llem doctor --json`` output, by name."""
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def both(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, dict[str, Any]]]:
    """The exit code of ``llem doctor ARGS``, its text, and its checks; --json must agree."""
    text = doctor(*args, env=env)
    as_json = doctor(*args, "--json", env=env)
    assert "Traceback" not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
    assert as_json.returncode == text.returncode, (text.stdout, as_json.stdout)
    assert json.loads(as_json.stdout)["exit_code"] == text.returncode
    return text.returncode, text.stdout, checks(as_json)


def campaign_in(folder: Path, compose: str, service: str = "app", **files: str) -> Path:
    """A one-backend campaign (backend ``app``, service ``service``) beside its compose file."""
    (folder / "compose.yml").write_text(compose)
    for name, text in files.items():
        (folder / name).write_text(text)
    path = folder / "c.yaml"
    path.write_text(
        f"name: doc\ncompose: compose.yml\nbackends:\n  app:\n    service: {service}\n"
        "    command: [run, '{n}']\ngrid:\n  n: [1]\n"
    )
    return path
