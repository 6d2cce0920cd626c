"""A journal write that fails partway (disk full) leaves no torn line behind."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from llem_cli.runs.journal import Journal
from llem_cli.runs.state import replay
from llem_testkit.engine import skip_unless_possible


def test_event_that_does_not_fit_is_cut_back_entirely(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        skip_unless_possible("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        journal = Journal(mnt / "journal.jsonl")
        journal.append("run_started", run_id="r")
        size_before = (mnt / "journal.jsonl").stat().st_size
        # fill the filesystem, leaving less room than the next event needs
        with open(mnt / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"x" * 1024)
            except OSError:
                pass
        with pytest.raises(OSError) as raised:
            journal.append("run_aborted", run_id="r", reason="y" * 20000)
        assert raised.value.errno == errno.ENOSPC
        journal.close()
        assert (mnt / "journal.jsonl").stat().st_size == size_before
        state = replay(mnt / "journal.jsonl")
        assert state.defects == [] and state.started
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
