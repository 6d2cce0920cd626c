"""After a signal ended llem's run, a second one never turns the clean 130/143 into a death by
signal: not even in the interpreter's last milliseconds, when Python has reset its own signal
handlers to the default (an ignoring Python handler is not enough; ``SIG_IGN`` is)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from llem_testkit import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from llem_cli.errors import Interrupted
    from llem_cli.signals import handle_signals

    try:
        with handle_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    except Interrupted as exc:
        print("go", flush=True)  # the run is over: what follows is the way out
        time.sleep(0.02)
        sys.exit(exc.exit_code)
    """
)


def test_a_flood_of_sigint_while_exiting_still_exits_143() -> None:
    codes = []
    for _ in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            stdout=subprocess.PIPE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"go"
        while proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                break
        proc.wait(timeout=30)
        proc.stdout.close()
        codes.append(proc.returncode)
    assert codes == [143] * 15
