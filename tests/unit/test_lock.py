"""The per-compose-project run lock, with real processes contending and dying."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from llem_cli.errors import EXIT_LOCKED, LockHeld
from llem_cli.runs.lock import LOCK_DIR_ENV, RunLock, lock_dir, lock_path, read_holder


@pytest.fixture
def locks(tmp_path, monkeypatch):
    directory = tmp_path / "locks"
    monkeypatch.setenv(LOCK_DIR_ENV, str(directory))
    return directory


# A child that takes the lock, says so on stdout, then holds it until killed or HOLD_S pass.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from llem_cli.errors import LockHeld
    from llem_cli.runs.lock import RunLock
    project, run_dir, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
    lock = RunLock(project, run_dir)
    try:
        lock.acquire()
    except LockHeld as e:
        print("HELD", e.one_line(), flush=True)
        sys.exit(e.exit_code)
    print("LOCKED", flush=True)
    time.sleep(hold)
    lock.release()
    """
)


def spawn(project, run_dir, hold, **kw):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, project, str(run_dir), str(hold)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def test_lock_dir_default_is_per_user_and_ignores_xdg(monkeypatch):
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/12345")
    assert str(lock_dir()) == f"/tmp/llem-locks-{os.getuid()}"


def test_lock_path_is_named_after_the_project(locks):
    assert lock_path("llem-demo") == locks / "llem-demo.lock"
    assert lock_path("../evil/x") == locks / ".._evil_x.lock"
    with pytest.raises(ValueError):
        lock_path("")


def test_acquire_writes_holder_info_and_release_clears_it(locks, tmp_path):
    lock = RunLock("proj", tmp_path / "run1")
    with lock:
        assert lock.held
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid() and info["run_dir"] == str(tmp_path / "run1")
        assert info["started_at"].endswith("Z") and info["project"] == "proj"
        holder = read_holder("proj")
        assert holder is not None and holder.pid == os.getpid()
    assert not lock.held
    assert lock.path.exists() and lock.path.read_text() == ""
    assert read_holder("proj") is None


def test_second_lock_in_the_same_process_is_refused(locks, tmp_path):
    # flock locks belong to open file descriptions: even one process cannot take it twice.
    with RunLock("proj", tmp_path / "a"):
        with pytest.raises(LockHeld) as info:
            RunLock("proj", tmp_path / "b").acquire()
        assert info.value.exit_code == EXIT_LOCKED == 75
        message = info.value.one_line()
        assert f"pid {os.getpid()}" in message and str(tmp_path / "a") in message
        assert "'proj'" in message


def test_different_projects_do_not_conflict(locks, tmp_path):
    with RunLock("one", tmp_path / "a"), RunLock("two", tmp_path / "b"):
        pass


def test_reacquire_after_release(locks, tmp_path):
    lock = RunLock("proj", tmp_path)
    lock.acquire()
    lock.acquire()  # idempotent while held
    lock.release()
    lock.release()  # and so is release
    with RunLock("proj", tmp_path / "other"):
        pass


def test_descriptor_is_close_on_exec(locks, tmp_path):
    with RunLock("proj", tmp_path) as lock:
        flags = fcntl.fcntl(lock._fd, fcntl.F_GETFD)
        assert flags & fcntl.FD_CLOEXEC


def test_a_child_process_does_not_keep_the_lock(locks, tmp_path):
    """A straggling child (a docker compose up) must not hold a dead run's lock."""
    lock = RunLock("proj", tmp_path)
    lock.acquire()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        close_fds=False,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Until it execs, a forked child shares every descriptor; after, CLOEXEC ones are gone.
        assert child.stdout.readline() == "up\n"
        lock.release()
        with RunLock("proj", tmp_path / "next"):
            pass
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_two_processes_contend_one_wins_other_exits_75(locks, tmp_path):
    first = spawn("shared", tmp_path / "run-a", 30)
    try:
        assert first.stdout.readline().strip() == "LOCKED"
        second = spawn("shared", tmp_path / "run-b", 0)
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 75
        assert f"pid {first.pid}" in out and str(tmp_path / "run-a") in out
    finally:
        first.kill()
        first.wait()


def test_simultaneous_starts_exactly_one_wins(locks, tmp_path):
    children = [spawn("race", tmp_path / f"run-{i}", 60) for i in range(4)]
    try:
        deadline = time.monotonic() + 60
        while sum(c.poll() is not None for c in children) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        losers = [c for c in children if c.poll() is not None]
        (winner,) = [c for c in children if c.poll() is None]
        assert [c.returncode for c in losers] == [75, 75, 75]
        assert winner.stdout.readline().strip() == "LOCKED"
    finally:
        for c in children:
            c.kill()
            c.wait()
            c.stdout.close()


def test_lock_of_a_killed_holder_is_taken_over(locks, tmp_path):
    holder = spawn("proj", tmp_path / "dead", 60)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        with pytest.raises(LockHeld):
            RunLock("proj", tmp_path / "mine").acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    # Stale holder info is still in the file: taking over must not depend on it.
    assert read_holder("proj").pid == holder.pid
    with RunLock("proj", tmp_path / "mine") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_holder_not_yet_recorded(locks, tmp_path):
    locks.mkdir()
    path = lock_path("proj")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked, nothing written yet
        with pytest.raises(LockHeld, match="holder not yet recorded"):
            RunLock("proj", tmp_path).acquire()
    finally:
        os.close(fd)


def test_lock_dir_that_is_a_file_is_an_environment_problem(tmp_path, monkeypatch):
    from llem_cli.errors import EnvironmentProblem

    bogus = tmp_path / "file"
    bogus.write_text("")
    monkeypatch.setenv(LOCK_DIR_ENV, str(bogus))
    with pytest.raises(EnvironmentProblem):
        RunLock("proj", tmp_path).acquire()


def test_acquire_never_blocks_while_the_lock_is_held(locks, tmp_path):
    """acquire answers at once: a blocking flock would wait for this process, which waits for it."""
    with RunLock("proj", tmp_path / "a"):
        contender = spawn("proj", tmp_path / "b", 0)
        try:
            # the lock stays held until the contender has answered; if acquire blocked, this
            # raises TimeoutExpired (and the test fails) instead of both waiting forever
            out, _ = contender.communicate(timeout=30)
        finally:
            contender.kill()
            contender.wait()
            contender.stdout.close()
    assert contender.returncode == EXIT_LOCKED
    assert out.startswith("HELD ") and f"pid {os.getpid()}" in out
