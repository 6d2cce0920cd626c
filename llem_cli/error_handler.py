"""The one place errors become exit codes (docs/design.md §3.2).

A known error prints one line and exits with its code; Ctrl-C exits 130; a bug
prints one line pointing at a crash log holding the traceback and versions, so
no expected failure ever shows a traceback.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import click

from llem_cli import __version__
from llem_cli.errors import EXIT_SIGINT, EXIT_SOME_FAILED, CampaignInvalid, LlemError
from llem_cli.output import get_output


def crash_log_dir() -> Path:
    """Where crash logs go: ``$XDG_CACHE_HOME/llem`` (``~/.cache/llem``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llem"


def _write_crash_log(exc: BaseException) -> Path | None:
    try:
        folder = crash_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        body = (
            f"llem {__version__}\npython {sys.version}\nplatform {platform.platform()}\n"
            f"argv {sys.argv}\n\n" + "".join(traceback.format_exception(exc))
        )
        path.write_text(body, encoding="utf-8")
        return path
    except OSError:
        return None


@contextlib.contextmanager
def error_handler(ctx: click.Context) -> Iterator[None]:
    """Map every exception raised by a command to a line and an exit code."""
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except CampaignInvalid as exc:
        out = get_output()
        for line in exc.problems or [exc.one_line()]:
            click.echo(line, err=True)
        if exc.problems:
            count = sum(": warning: " not in p for p in exc.problems)
            out.error(f"invalid campaign ({count} problem{'s' if count != 1 else ''})")
        ctx.exit(exc.exit_code)
    except LlemError as exc:
        get_output().error(exc.one_line())
        ctx.exit(exc.exit_code)
    except KeyboardInterrupt:
        get_output().error("interrupted")
        ctx.exit(EXIT_SIGINT)
    except BrokenPipeError:
        # the reader (head, less) went away: not an error worth a message
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the broken stream
        ctx.exit(0)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        log = _write_crash_log(exc)
        where = f"; details in {log}" if log else ""
        get_output().error(
            f"unexpected error: {type(exc).__name__}: {exc}{where} (please report it)"
        )
        if get_output().verbosity > 0:
            traceback.print_exc()
        ctx.exit(EXIT_SOME_FAILED)
