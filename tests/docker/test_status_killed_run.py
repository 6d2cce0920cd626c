"""``llem status`` of a real llem killed with ``kill -9`` against the real engine.

The same states from journals written by hand, with no engine: tests/unit/test_status_cmd.py.
"""

from __future__ import annotations

import json
import re

import pytest

from llem_testkit.e2e import E2ECampaign, kill9, wait_for

pytestmark = pytest.mark.docker


def test_status_of_a_killed_run(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {"app": {"command": ["sh", "-c", "touch {experiment_dir}/sleeping; sleep 30"]}},
        grid={"step": [1, 2]},
    )
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()

    def sleeping() -> str | None:
        found = list((run / "experiments").glob("*/sleeping"))
        return found[0].parent.name if found else None

    key = wait_for(sleeping, 60, "the first experiment to start")
    kill9(proc)

    done = c.llem("status", run, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["state"] == "crashed" and not info["process_alive"]
    assert info["in_flight"] == [key]
    assert info["state_detail"].startswith("crashed")

    text = c.llem("status", c.file)
    assert text.returncode == 0, text.stderr
    assert f"was running: {key} (will run again on --resume)" in text.stdout
    assert not re.search(r"^\s*running:", text.stdout, re.MULTILINE), text.stdout
