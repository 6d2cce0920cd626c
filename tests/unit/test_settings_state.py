"""The host-wide state file of original GPU settings (llem_cli.telemetry.settings_state).

Owners are real processes: a child that is running, one that has exited (reaped, or a zombie),
and a live pid recorded with another start time (a reused pid). Crashes and races are real
processes too: one killed between writing the temporary file and renaming it, two claiming at
once. ``restore_orphans`` runs the real pynvml on the stand-in library (``stub`` fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem_cli.telemetry.gpu_settings import Original
from llem_cli.telemetry.settings_state import (
    Entry,
    Owner,
    SettingsBusy,
    StateFile,
    StateFileError,
    boot_id,
    process_start_ticks,
)
from llem_testkit import REPO_ROOT
from llem_testkit.engine import skip_unless_possible
from llem_testkit.nvml_stub import Stub

ORIGINAL = Original(power_limit_w=700.0)
UUID0 = "GPU-00000000-0000-0000-0000-000000000000"


def owner_of(pid: int, run_dir: str = "/results/c/run", *, start_offset: int = 0) -> Owner:
    """An owner record for process ``pid`` as it is now (``start_offset`` fakes a reuse)."""
    start = process_start_ticks(pid)
    assert start is not None, f"process {pid} is not running"
    return Owner(
        run_dir=run_dir,
        pid=pid,
        pid_start=start + start_offset,
        host=socket.gethostname(),
        since="2026-11-28T14:05:01.000Z",
        boot_id=boot_id(),
    )


@pytest.fixture
def live_child() -> Iterator[subprocess.Popen[bytes]]:
    """A process that runs until the test ends."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def dead_owner(run_dir: str = "/results/c/dead") -> Owner:
    """The owner record of a process that ran, was recorded, exited and was reaped."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    owner = owner_of(proc.pid, run_dir)
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    return owner


def run_python(code: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )


# ---- claim and release -----------------------------------------------------------------------


def test_claim_writes_the_documented_format_and_release_clears(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    me = Owner.current("/results/c/20261128T140500Z")
    assert state.claim(UUID0, 0, ORIGINAL, me) is True
    data = json.loads(state.path.read_text())
    assert data == {
        "version": 1,
        "gpus": {
            UUID0: {
                "index": 0,
                "original": {
                    "power_limit_w": 700.0,
                    "reset_sm_clocks": True,
                    "reset_mem_clocks": True,
                },
                "owner": {
                    "run_dir": "/results/c/20261128T140500Z",
                    "pid": os.getpid(),
                    "pid_start": process_start_ticks(os.getpid()),
                    "boot_id": boot_id(),
                    "host": socket.gethostname(),
                    "since": me.since,
                },
            }
        },
    }
    assert state.entries() == [Entry(UUID0, 0, ORIGINAL, me)]
    assert me.status() == "alive" and state.orphans() == []

    # claiming again keeps the first original (the GPU may be changed by now)
    assert state.claim(UUID0, 0, Original(power_limit_w=300.0), me) is True
    assert state.entries()[0].original == ORIGINAL
    assert state.lock_path.exists()

    assert state.release("GPU-other", me) is False
    assert state.release(UUID0, me) is True
    assert json.loads(state.path.read_text()) == {"version": 1, "gpus": {}}
    assert state.release(UUID0, me) is False


def test_a_live_owner_makes_a_claim_busy(
    tmp_path: Path, live_child: subprocess.Popen[bytes]
) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    other = owner_of(live_child.pid, "/results/other/run")
    assert state.claim(UUID0, 3, ORIGINAL, other)
    me = Owner.current("/results/c/run")
    with pytest.raises(SettingsBusy) as busy:
        state.claim(UUID0, 3, Original(power_limit_w=250.0), me)
    assert busy.value.exit_code == 75
    assert busy.value.one_line() == (
        f"GPU 3 ({UUID0}) has settings changed by another live run /results/other/run "
        f"(pid {live_child.pid}, alive) on {socket.gethostname()} "
        "(wait for it to end, or choose other GPUs)"
    )
    assert state.release(UUID0, me) is False  # not mine to release
    assert state.entries()[0].owner == other
    assert state.orphans() == []


def test_a_dead_owners_entry_is_left_for_restore(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    gone = dead_owner()
    assert state.claim(UUID0, 0, ORIGINAL, gone)
    me = Owner.current("/results/c/run")
    assert state.claim(UUID0, 0, Original(power_limit_w=250.0), me) is False
    assert state.entries() == [Entry(UUID0, 0, ORIGINAL, gone)]


# ---- orphans ---------------------------------------------------------------------------------


def test_orphans_by_dead_pid_reused_pid_and_zombie(
    tmp_path: Path, live_child: subprocess.Popen[bytes]
) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    gone = dead_owner("/results/c/gone")
    reused = owner_of(live_child.pid, "/results/c/reused", start_offset=-1)
    alive = owner_of(live_child.pid, "/results/c/alive")
    elsewhere = Owner("/results/c/far", 1, 1, "another-host.invalid", "2026-01-01T00:00:00.000Z")

    # a child that has exited but is not reaped yet: a zombie is gone too
    zombie_proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    zombie = owner_of(zombie_proc.pid, "/results/c/zombie")
    assert zombie_proc.stdin is not None
    zombie_proc.stdin.close()
    deadline = time.monotonic() + 30
    stat = Path(f"/proc/{zombie_proc.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # no poll(): it would reap
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        for i, owner in enumerate((gone, reused, alive, elsewhere, zombie)):
            assert state.claim(f"GPU-{i}", i, ORIGINAL, owner)
        assert [gone.status(), reused.status(), alive.status(), elsewhere.status()] == [
            "gone",
            "reused",
            "alive",
            "elsewhere",
        ]
        assert zombie.status() == "gone"
        assert [(e.uuid, e.owner) for e in state.orphans()] == [
            ("GPU-0", gone),
            ("GPU-1", reused),
            ("GPU-4", zombie),
        ]
    finally:
        zombie_proc.wait(timeout=30)
    assert zombie.status() == "gone"


def test_a_rebooted_host_makes_every_owner_gone() -> None:
    me = Owner.current("/results/c/run")
    if me.boot_id is None:
        skip_unless_possible("no /proc/sys/kernel/random/boot_id here")
    before_reboot = Owner(
        me.run_dir, me.pid, me.pid_start, me.host, me.since, boot_id="not-this-boot"
    )
    assert me.status() == "alive"
    assert before_reboot.status() == "gone"


# ---- durability and concurrency --------------------------------------------------------------


def test_a_crash_between_temp_write_and_rename_leaves_the_old_file(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    me = Owner.current("/results/c/run")
    assert state.claim(UUID0, 0, ORIGINAL, me)
    old = state.path.read_bytes()
    crash = run_python(
        """
        import os, sys
        from llem_cli.telemetry.gpu_settings import Original
        from llem_cli.telemetry.settings_state import Owner, StateFile

        def die(src, dst):  # the temporary file is written and fsynced: die before the rename
            assert open(src).read().count("GPU-crash") == 1
            os._exit(137)

        os.replace = die
        StateFile(sys.argv[1]).claim("GPU-crash", 1, Original(300.0), Owner.current("/r/x"))
        """,
        str(state.path),
    )
    assert crash.returncode == 137, crash.stderr
    assert state.path.read_bytes() == old
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".gpu-state.json.")
    assert [e.uuid for e in state.entries()] == [UUID0]
    # the dead writer's lock is gone with it, and its leftover is ignored
    assert state.claim("GPU-next", 1, ORIGINAL, me)
    assert [e.uuid for e in state.entries()] == [UUID0, "GPU-next"]


def test_concurrent_claims_from_two_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gpu-state.json"
    code = textwrap.dedent(
        """
        import sys, time
        from llem_cli.telemetry.gpu_settings import Original
        from llem_cli.telemetry.settings_state import Owner, StateFile

        state, tag, go = StateFile(sys.argv[1]), sys.argv[2], float(sys.argv[3])
        me = Owner.current(f"/results/{tag}")
        time.sleep(max(0.0, go - time.time()))
        for i in range(30):
            assert state.claim(f"GPU-{tag}-{i:02d}", i, Original(100.0 + i), me)
            if i % 3 == 0:
                assert state.release(f"GPU-{tag}-{i:02d}", me)
        print(me.pid)
        """
    )
    go = f"{time.time() + 1.0:.3f}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), tag, go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for tag in ("a", "b")
    ]
    pids = {}
    for tag, proc in zip(("a", "b"), procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        pids[tag] = int(out)
    entries = StateFile(path).entries()
    expected = [f"GPU-{tag}-{i:02d}" for tag in ("a", "b") for i in range(30) if i % 3]
    assert [e.uuid for e in entries] == expected
    for e in entries:
        tag = e.uuid.split("-")[1]
        assert e.owner.pid == pids[tag] and e.owner.run_dir == f"/results/{tag}"
        assert e.original == Original(100.0 + e.index)


def test_threads_sharing_one_state_file_lose_nothing(tmp_path: Path) -> None:
    # lanes are threads of one process: they take turns on the object, not only on flock
    state = StateFile(tmp_path / "gpu-state.json")
    me = Owner.current("/results/c/run")

    def claim_many(tag: str) -> None:
        for i in range(20):
            assert state.claim(f"GPU-{tag}-{i:02d}", i, ORIGINAL, me)

    threads = [threading.Thread(target=claim_many, args=(tag,)) for tag in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [e.uuid for e in state.entries()] == [
        f"GPU-{tag}-{i:02d}" for tag in "abc" for i in range(20)
    ]


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"version": 1, "gpus": {', "Expecting property name enclosed in double quotes"),
        ('{"version": 2, "gpus": {}}', "version 2, expected 1"),
        ('{"version": 1, "gpus": {"GPU-x": {"index": "zero"}}}', "entry GPU-x: 'index'"),
        (
            '{"version": 1, "gpus": {"GPU-x": {"index": 0, "original": {}, "owner": {}}}}',
            "entry GPU-x: 'owner.pid' is not a process id",
        ),
    ],
)
def test_a_corrupt_file_is_one_line_naming_it_and_is_kept(
    tmp_path: Path, text: str, why: str
) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    state.path.write_text(text)
    for call in (
        state.entries,
        state.orphans,
        lambda: state.claim(UUID0, 0, ORIGINAL, Owner.current("/r")),
        lambda: state.release(UUID0, Owner.current("/r")),
    ):
        with pytest.raises(StateFileError) as err:
            call()
        line = err.value.one_line()
        assert "\n" not in line
        assert line.startswith(f"the GPU settings state file {state.path} is corrupt (")
        assert why in line
        assert err.value.exit_code == 3
    assert state.path.read_text() == text  # never silently discarded


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "gpu-state.json")
    state.path.mkdir()  # a directory where the file should be
    with pytest.raises(StateFileError) as err:
        state.entries()
    assert err.value.one_line() == (
        f"cannot read the GPU settings state file {state.path}: Is a directory"
    )


def test_llem_state_dir_is_honoured_and_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = tmp_path / "deep" / "state"
    monkeypatch.setenv("LLEM_STATE_DIR", str(where))
    state = StateFile()
    assert state.path == where / "gpu-state.json"
    assert state.entries() == [] and not where.exists()  # reading creates nothing
    old = os.umask(0o022)
    try:
        assert state.claim(UUID0, 0, ORIGINAL, Owner.current("/r"))
    finally:
        os.umask(old)
    assert (where.stat().st_mode & 0o777) == 0o755
    assert [e.uuid for e in StateFile(where / "gpu-state.json").entries()] == [UUID0]
    monkeypatch.delenv("LLEM_STATE_DIR")
    assert StateFile().path == Path("/var/lib/llem/gpu-state.json")


def test_a_state_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    state = StateFile(blocker / "state" / "gpu-state.json")
    with pytest.raises(StateFileError) as err:
        state.claim(UUID0, 0, ORIGINAL, Owner.current("/r"))
    assert err.value.one_line() == (
        f"cannot create the GPU settings state directory {blocker / 'state'}: Not a directory "
        "(set LLEM_STATE_DIR to a writable directory)"
    )


def test_no_permission_to_write_suggests_llem_state_dir(tmp_path: Path) -> None:
    # root passes permission bits unless it lacks CAP_DAC_OVERRIDE: drop it, as a container may
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            skip_unless_possible("running as root and no setpriv to drop CAP_DAC_OVERRIDE")
        prefix = (setpriv, "--bounding-set", "-dac_override,-dac_read_search")
    where = tmp_path / "state"
    where.mkdir()
    where.chmod(0o555)
    try:
        proc = run_python(
            """
            import sys
            from llem_cli.telemetry.gpu_settings import Original
            from llem_cli.telemetry.settings_state import Owner, StateFile, StateFileError
            try:
                StateFile(sys.argv[1]).claim("GPU-x", 0, Original(300.0), Owner.current("/r"))
            except StateFileError as exc:
                print(exc.one_line())
            """,
            str(where / "gpu-state.json"),
            prefix=prefix,
        )
    finally:
        where.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"cannot open the GPU settings lock file {where / 'gpu-state.json.lock'}: "
        "Permission denied (run as root, or set LLEM_STATE_DIR to a writable directory)"
    )


# ---- restoring what a dead run left ----------------------------------------------------------


def test_restore_orphans_on_the_stub(stub: Stub, tmp_path: Path) -> None:
    path = tmp_path / "state" / "gpu-state.json"
    # a run changes GPU 1 and ends without restoring (as after kill -9); GPU 0 untouched
    crashed = stub.run(
        f"""
        from llem_cli.telemetry import GpuSettings, Owner, SettingsControl, StateFile, open_gpus
        control = SettingsControl(open_gpus())
        state = StateFile({str(path)!r})
        me = Owner.current("/results/c/crashed")
        original = control.original(1)
        assert state.claim("GPU-00000000-0000-0000-0000-000000000001", 1, original, me)
        control.apply(1, GpuSettings(power_limit_w=250, sm_clock_mhz=1410))
        result = {{"pid": me.pid, "read": control.read(1)}}
        """,
        {"count": 2, "gpu1.power_limit_mw": 650_000},
    )
    assert crashed["read"]["power_limit_w"] == 250.0 and crashed["read"]["sm_clock_mhz"] == 1410
    state = StateFile(path)
    # a GPU this host's NVML does not know, left by another dead run
    gone = dead_owner("/results/c/elsewhere")
    assert state.claim("GPU-not-here", 5, ORIGINAL, gone)
    assert {e.uuid for e in state.orphans()} == {"GPU-not-here", UUID0[:-1] + "1"}

    after = stub.run(
        f"""
        from llem_cli.telemetry import SettingsControl, StateFile, open_gpus, restore_orphans
        control = SettingsControl(open_gpus([0]))  # the run's GPUs only: GPU 1 found by UUID
        state = StateFile({str(path)!r})
        result = {{"lines": restore_orphans(state, control), "read": control.read(1),
                   "left": [e.uuid for e in state.entries()],
                   "again": restore_orphans(state, control)}}
        """
    )
    uuid1 = UUID0[:-1] + "1"
    not_here = (
        f"GPU GPU-not-here (index 5 then) left changed by run /results/c/elsewhere "
        f"(pid {gone.pid}, gone) is not known to NVML here: its original settings stay in the "
        "state file"
    )
    assert after["lines"] == [  # by UUID
        f"restored GPU 1 ({uuid1}) power limit 650 W, clocks unlocked, left changed by run "
        f"/results/c/crashed (pid {crashed['pid']}, gone)",
        not_here,
    ]
    assert after["read"] == {
        "power_limit_w": 650.0,
        "enforced_power_limit_w": 650.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
    }
    assert after["left"] == ["GPU-not-here"]
    assert after["again"] == [not_here]


def test_a_failed_restore_keeps_the_entry(stub: Stub, tmp_path: Path) -> None:
    path = tmp_path / "gpu-state.json"
    gone = dead_owner("/results/c/crashed")
    state = StateFile(path)
    assert state.claim(UUID0, 0, Original(power_limit_w=300.0), gone)
    lines = stub.run(
        f"""
        from llem_cli.telemetry import SettingsControl, StateFile, open_gpus, restore_orphans
        result = restore_orphans(StateFile({str(path)!r}), SettingsControl(open_gpus()))
        """,
        {"count": 1, "no_permission": 1},
    )
    assert len(lines) == 1
    assert lines[0].startswith(
        f"could not restore GPU 0 ({UUID0}) left changed by run /results/c/crashed "
        f"(pid {gone.pid}, gone): GPU 0 ({UUID0}): power limit not restored to 300 W: "
        "no permission (Insufficient Permissions); run llem as root"
    )
    assert lines[0].endswith("(kept in the state file for the next try)")
    assert [e.uuid for e in state.entries()] == [UUID0]
