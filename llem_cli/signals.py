"""SIGINT/SIGTERM turned into an exception, so context managers tear down before llem exits.

:func:`handle_signals` installs handlers that raise :class:`SignalReceived` (a BaseException, so
``except Exception`` in library code does not swallow it). The exception unwinds through
:class:`~llem_cli.docker.manager.ContainerManager`'s ``__exit__``, which tears down; then
:func:`handle_signals` turns it into :class:`~llem_cli.errors.Interrupted` with exit 130 or 143.

While teardown runs it holds :func:`deferred`: a second Ctrl-C (or a SIGTERM from an impatient
supervisor) is remembered, not raised, so it cannot abort the teardown halfway. Child processes
run in their own sessions (see :mod:`llem_cli.docker.proc`), so a terminal's Ctrl-C does not reach
the docker commands of the teardown either.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from llem_cli.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted

# keyed by int: handlers get the plain signal number (Signals is an IntEnum, so both look up)
_EXIT_CODES: dict[int, int] = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class SignalReceived(BaseException):
    """SIGINT or SIGTERM arrived; ``exit_code`` is 130 or 143."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = _EXIT_CODES.get(signum, 128 + signum)
        super().__init__(signal.Signals(signum).name)


class Cancelled(SignalReceived):
    """Raised in a lane's thread: the main thread received ``signum`` and stops the run.

    A subclass, so the loop's handling of a signal (record ``interrupted``, unwind) is the same
    in a lane as in the main thread, where handlers can raise directly.
    """


class _State:
    """Module state: how deep in :func:`deferred` we are, and what arrived meanwhile."""

    depth = 0
    pending: int | None = None
    received: int | None = None


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    _state.received = _state.received or signum
    if _state.depth > 0:
        _state.pending = _state.pending or signum
        return
    raise SignalReceived(signum)


@contextlib.contextmanager
def deferred(*, absorb: bool = False) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs (teardown); re-raise one afterwards.

    With ``absorb`` (an exception, perhaps a signal's, is already ending llem) a signal that
    arrived meanwhile is dropped instead, so it cannot replace the exception being handled.
    """
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        pending = _state.pending
        if _state.depth == 0:
            _state.pending = None
    if _state.depth == 0 and pending is not None and not absorb:
        raise SignalReceived(pending)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Install the handlers for the block; a signal ends it as :class:`Interrupted` (130/143).

    Outside the main thread handlers cannot be installed; the block then runs unchanged.
    After a signal ended the block, llem is on its way out: instead of the previous handlers,
    SIGINT and SIGTERM are then ignored (``SIG_IGN``), so a second Ctrl-C or an
    impatient supervisor's SIGTERM cannot turn a clean 143 into a KeyboardInterrupt between
    the end of the teardown and the exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _EXIT_CODES}
    _state.received = None
    for sig in _EXIT_CODES:
        signal.signal(sig, _handler)
    stopping = False
    try:
        yield
    except SignalReceived as exc:
        stopping = True
        name = signal.Signals(exc.signum).name
        raise Interrupted(f"interrupted by {name}", exc.exit_code) from None
    finally:
        for sig, old in previous.items():
            # SIG_IGN, not a Python handler: Python resets its own handlers to the default at
            # interpreter shutdown, so a second signal in the last milliseconds would kill
            # llem by that signal (exit -2) instead of the clean 130/143 it is exiting with
            signal.signal(sig, signal.SIG_IGN if stopping else old)


def last_signal() -> int | None:
    """The first signal received inside the current/last :func:`handle_signals` block."""
    return _state.received
