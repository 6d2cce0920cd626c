"""The one place llem launches a subprocess.

Every docker/compose call goes through a :class:`Runner` so that

* each call is an argv list (never a shell string) with ``stdin`` closed and a timeout;
* each child gets its own session, so a timeout (or a signal that stops llem) kills the client's
  whole process group: ``docker compose`` runs the plugin binary as a child of ``docker``, and
  killing only the top process would leave the plugin running;
* errors carry the argv with secrets redacted (:mod:`llem_cli.redaction`), the exit code and
  the stderr tail;
* ``llem run --dry-run`` can swap in :class:`DryRunRunner`, which prints the argvs instead.

Experiment output is streamed straight into the log files: the child writes to the file
descriptors itself, so the logs fill as the output comes and llem copies nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from llem_cli.errors import EnvironmentProblem, LlemError
from llem_cli.redaction import redact_argv, redact_text
from llem_cli.signals import Cancelled

#: bytes of stderr kept for messages and outcome classification
TAIL_BYTES = 8192

@dataclass(frozen=True)
class Result:
    """What one finished (or timed-out) command did.

    ``stdout``/``stderr`` hold the captured text; when a stream went to a file, the field is empty
    (stdout) or the file's last :data:`TAIL_BYTES` (stderr), so a classifier always has the tail.
    Times are seconds: ``started_at`` is the wall clock (``time.time()``), ``duration_s`` is
    measured with the monotonic clock.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    started_at: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out

    @property
    def stderr_tail(self) -> str:
        """The last :data:`TAIL_BYTES` characters of stderr."""
        return self.stderr[-TAIL_BYTES:]


class CommandFailed(LlemError):
    """A command exited non-zero (or timed out) where success was required.

    ``argv`` is already redacted, so the error can be printed and logged as it is.
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stderr_tail: str = "",
        *,
        timed_out: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = redact_argv(argv, env)
        self.returncode = returncode
        self.stderr_tail = redact_text(stderr_tail, env)
        self.timed_out = timed_out
        what = "timed out" if timed_out else f"exited {returncode}"
        message = f"command {what}: {shlex.join(self.argv)}"
        last = last_line(self.stderr_tail)
        if last:
            message += f": {last}"
        super().__init__(message)

    def details(self) -> str:
        """The command, its exit code and the indented stderr tail (for ``-v`` and logs)."""
        lines = [f"command: {shlex.join(self.argv)}", f"return code: {self.returncode}"]
        if self.timed_out:
            lines.append("timed out: yes")
        if self.stderr_tail.strip():
            lines.append("stderr:")
            lines += [f"    {line}" for line in self.stderr_tail.rstrip().splitlines()]
        return "\n".join(lines)


def last_line(text: str) -> str:
    """The last non-blank line of a command's output (one-line messages quote it)."""
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()
    return ""


class Runner(Protocol):
    """Runs argvs; the real one launches processes, the dry-run one prints them."""

    dry_run: bool

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        stdout_path: Path | None = None,
        stderr_path: Path | None = None,
    ) -> Result:
        """Run ``argv``; ``env`` is added to llem's environment; see :class:`SubprocessRunner`."""
        ...


class SubprocessRunner:
    """Runs commands for real (see the module docstring for the guarantees).

    Lanes run commands from several threads through one runner; when the main thread receives
    SIGINT/SIGTERM it calls :meth:`cancel`, which kills every command in flight and makes
    each waiting thread raise :class:`~llem_cli.signals.Cancelled` (and any new command too)
    until :meth:`reset`, before the teardown runs its own commands.
    """

    dry_run = False

    def __init__(self) -> None:
        self._live: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._cancelled: int | None = None
        self.cancel_event = threading.Event()

    def cancel(self, signum: int) -> None:
        """Kill every command in flight; :meth:`run` raises Cancelled until :meth:`reset`."""
        with self._lock:
            self._cancelled = signum
            self.cancel_event.set()
            live = list(self._live)
        for proc in live:
            _kill_group(proc)

    def reset(self) -> None:
        """Run commands again (the lanes have stopped; the teardown needs docker)."""
        with self._lock:
            self._cancelled = None
            self.cancel_event.clear()

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled when :meth:`cancel` was called (for waits outside a command)."""
        signum = self._cancelled
        if signum is not None:
            raise Cancelled(signum)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        stdout_path: Path | None = None,
        stderr_path: Path | None = None,
    ) -> Result:
        """Run ``argv`` to completion or until ``timeout`` seconds have passed.

        ``env`` is added to llem's own environment (values go there, never on the argv).
        With ``stdout_path``/``stderr_path`` that stream is appended to the file as it comes.
        A timed-out command's process group is killed and the result has ``timed_out`` set.
        With ``check`` a non-zero exit or a timeout raises :class:`CommandFailed`.
        Any exception while waiting (a signal turned into one) kills the process group first.
        """
        argv = tuple(argv)
        if not argv:
            raise ValueError("empty argv")
        self.raise_if_cancelled()
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        with contextlib.ExitStack() as files:
            out: int | IO[bytes] = subprocess.PIPE
            err: int | IO[bytes] = subprocess.PIPE
            if stdout_path is not None:
                out = files.enter_context(open(stdout_path, "ab"))  # noqa: SIM115
            if stderr_path is not None:
                err = files.enter_context(open(stderr_path, "ab"))  # noqa: SIM115
            started_at = time.time()
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=full_env,
                    start_new_session=True,
                    close_fds=True,
                )
            except FileNotFoundError as exc:
                raise EnvironmentProblem(
                    f"{argv[0]}: command not found",
                    hint="is Docker installed and on PATH? `llem doctor` checks",
                ) from exc
            except PermissionError as exc:
                raise EnvironmentProblem(f"{argv[0]}: permission denied") from exc
            with self._lock:
                self._live.add(proc)
                cancelled = self._cancelled is not None
            if cancelled:  # cancel() ran between the check above and the registration
                _kill_group(proc)
            timed_out = False
            try:
                try:
                    if stdout_path is not None and stderr_path is not None:
                        # no pipes to read: wait on the process itself (see _wait)
                        if not _wait(proc, timeout):
                            raise subprocess.TimeoutExpired(argv, timeout)
                        stdout_b = stderr_b = b""
                    else:
                        stdout_b, stderr_b = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill_group(proc)
                    # the group is dead: collect what it wrote (bounded, in case a grandchild
                    # escaped the group and holds the pipe open)
                    try:
                        stdout_b, stderr_b = proc.communicate(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        stdout_b, stderr_b = b"", b""
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=5)
            except BaseException:
                _kill_group(proc)
                raise
            finally:
                with self._lock:
                    self._live.discard(proc)
            self.raise_if_cancelled()
            duration = time.monotonic() - t0
        stdout = (stdout_b or b"").decode("utf-8", "replace")
        if stderr_path is not None:
            stderr = read_tail(stderr_path)
        else:
            stderr = (stderr_b or b"").decode("utf-8", "replace")
        returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        result = Result(argv, returncode, stdout, stderr, duration, started_at, timed_out)
        if check and not result.ok:
            raise CommandFailed(
                argv, result.returncode, result.stderr_tail, timed_out=timed_out, env=env
            )
        return result


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the process to exit within ``timeout`` seconds; True if it did.

    ``Popen.wait(timeout=...)`` polls with growing sleeps (up to 50 ms), which added ~25 ms to
    every experiment exec; a pidfd becomes readable the moment the process exits.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            if time.monotonic() >= deadline:
                return proc.poll() is not None
        proc.wait()
        return True
    finally:
        os.close(pidfd)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (it leads its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def read_tail(path: Path, nbytes: int = TAIL_BYTES) -> str:
    """The last ``nbytes`` of a file as text ('' if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - nbytes))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


Responder = Callable[[tuple[str, ...]], "Result | None"]


@dataclass
class DryRunRunner:
    """Prints each argv (redacted, shell-quoted) instead of running it, and records them.

    Every command "succeeds" with empty output unless ``responder`` returns a :class:`Result`
    for it. Nothing is launched and nothing is written, which is what ``--dry-run`` promises.
    """

    stream: IO[str] | None = None
    responder: Responder | None = None
    commands: list[tuple[str, ...]] = field(default_factory=list)
    dry_run: bool = True

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        stdout_path: Path | None = None,
        stderr_path: Path | None = None,
    ) -> Result:
        """Record and print ``argv``; return the responder's result or an empty success."""
        argv = tuple(argv)
        shown = redact_argv(argv, env)
        self.commands.append(shown)
        print(shlex.join(shown), file=self.stream or sys.stdout, flush=True)
        result = self.responder(argv) if self.responder else None
        return result if result is not None else Result(argv, 0, started_at=time.time())
