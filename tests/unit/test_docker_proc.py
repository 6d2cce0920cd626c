"""The subprocess runner, secret redaction and signal handling (local processes, no engine)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem_cli.docker.proc import CommandFailed, SubprocessRunner
from llem_cli.errors import EnvironmentProblem, Interrupted
from llem_cli.redaction import redact_argv, redact_text
from llem_cli.signals import SignalReceived, deferred, handle_signals

RUN = SubprocessRunner()


def test_result_fields() -> None:
    res = RUN.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, check=False)
    assert (res.returncode, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    assert res.argv[0] == "sh" and res.duration_s > 0 and res.started_at > 0


def test_stdin_is_closed() -> None:
    res = RUN.run(["cat"], timeout=10)
    assert res.stdout == ""


def test_check_raises_with_argv_code_and_tail() -> None:
    with pytest.raises(CommandFailed) as info:
        RUN.run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 4"], timeout=10)
    err = info.value
    assert err.returncode == 4 and err.argv[0] == "sh"
    assert err.message.endswith(": the reason")
    assert "    the reason" in err.details()


def test_missing_executable_is_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem, match="no-such-docker-xyz: command not found"):
        RUN.run(["no-such-docker-xyz", "version"], timeout=10)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # the grandchild (sleep) is what a compose plugin would be under `docker`
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    res = RUN.run(["sh", "-c", script], timeout=1, check=False)
    assert res.timed_out and not res.ok
    # killed by the runner (SIGKILL to the group), not waited for: `wait` would have exited 0
    assert res.returncode == -signal.SIGKILL
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)
    with pytest.raises(CommandFailed, match="timed out"):
        RUN.run(["sleep", "5"], timeout=0.5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_streams_to_files_as_output_comes(tmp_path: Path) -> None:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    script = "echo first; echo e1 >&2; sleep 1.5; echo second; echo e2 >&2; exit 2"
    seen_early: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            if out.exists() and "first" in out.read_text():
                seen_early.append(out.read_text())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    res = RUN.run(["sh", "-c", script], timeout=10, check=False, stdout_path=out, stderr_path=err)
    watcher.join()
    assert seen_early == ["first\n"]
    assert out.read_text() == "first\nsecond\n"
    assert res.stdout == "" and res.stderr == "e1\ne2\n" and res.returncode == 2


def test_stderr_tail_is_bounded(tmp_path: Path) -> None:
    err = tmp_path / "stderr.log"
    res = RUN.run(
        ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo l$i>&2; i=$((i+1)); done; echo last>&2"],
        timeout=20, check=False, stderr_path=err,
    )  # fmt: skip
    assert len(res.stderr) <= 8192 and res.stderr.endswith("last\n")
    assert err.stat().st_size > 8192


def test_env_values_go_through_the_environment() -> None:
    res = RUN.run(["sh", "-c", 'echo "$LLEM_X"'], timeout=10, env={"LLEM_X": "v 1"})
    assert res.stdout == "v 1\n"


def test_redact_argv() -> None:
    env = {"HF_TOKEN": "hf_abcdef", "NORMAL": "visible-value", "AWS_SECRET_ACCESS_KEY": "zzzz9999"}
    argv = [
        "docker", "run", "-e", "MY_PASSWORD=hunter22", "--env", "API_KEY=k1", "--env=DB_SECRET=s3",
        "-e", "PLAIN=ok", "--token=hf_abcdef", "visible-value", "x-zzzz9999-y",
    ]  # fmt: skip
    assert redact_argv(argv, env) == (
        "docker", "run", "-e", "MY_PASSWORD=***", "--env", "API_KEY=***", "--env=DB_SECRET=***",
        "-e", "PLAIN=ok", "--token=***", "visible-value", "x-***-y",
    )  # fmt: skip
    assert redact_text("auth hf_abcdef failed", env) == "auth *** failed"


def test_redacts_llems_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_verysecret")
    with pytest.raises(CommandFailed) as info:
        RUN.run(["sh", "-c", "echo ghp_verysecret >&2; exit 1", "ghp_verysecret"], timeout=10)
    shown = info.value.message + info.value.details()
    assert "ghp_verysecret" not in shown and "***" in shown


# ---- signals ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """A signal test leaves llem "going down" (signals ignored): give pytest its handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_signal_becomes_interrupted_with_exit_code() -> None:
    with pytest.raises(Interrupted) as info, handle_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert info.value.exit_code == 143
    with pytest.raises(Interrupted) as info, handle_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert info.value.exit_code == 130


def test_handlers_are_restored_after_a_block_no_signal_ended() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with handle_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_after_the_stop_cannot_change_how_llem_ends() -> None:
    # the teardown is over and the handlers would be the defaults again: a second Ctrl-C there
    # was a KeyboardInterrupt (exit -2 instead of 143, seen in the SIGTERM-then-SIGINT test)
    with pytest.raises(Interrupted) as info, handle_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    os.kill(os.getpid(), signal.SIGINT)  # between the end of the teardown and the exit
    time.sleep(0.1)
    assert info.value.exit_code == 143


def test_signal_during_wait_kills_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    with pytest.raises(Interrupted), handle_signals():
        timer.start()
        RUN.run(["sh", "-c", f"echo $$ > {pidfile}; sleep 30"], timeout=60)
    time.sleep(0.2)
    assert not _alive(int(pidfile.read_text()))


def test_deferred_holds_a_signal_until_the_block_ends() -> None:
    done: list[str] = []
    with pytest.raises(Interrupted) as info, handle_signals():
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during teardown
            time.sleep(0.1)
            done.append("teardown finished")
        done.append("not reached")
    assert done == ["teardown finished"]
    assert info.value.exit_code == 130


def test_deferred_absorb_keeps_the_first_exception() -> None:
    with pytest.raises(Interrupted) as info, handle_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except SignalReceived:
            with deferred(absorb=True):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
            raise
    assert info.value.exit_code == 143


def test_handle_signals_off_main_thread_is_a_no_op() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with handle_signals():
                seen.append(signal.getsignal(signal.SIGTERM))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if errors:  # e.g. ValueError: signal only works in main thread of the main interpreter
        raise errors[0]
    assert seen == [before]  # the block ran, with the main thread's handler left in place
    assert signal.getsignal(signal.SIGTERM) is before
