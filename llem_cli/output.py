"""What llem prints, and how: verbosity, colour, the lazily-made rich console, and logging.

rich is imported only when a command draws a table or a progress display, so
``llem --help`` and ``llem validate`` start fast. Log records of llem's modules go through the
same :class:`Output` as everything else (:func:`configure_logging`): a warning looks like every
other warning, ``-q`` silences what it silences elsewhere, ``-v`` shows the detail.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class Output:
    """Global output settings from ``-v``, ``-q``, ``--no-color`` and ``NO_COLOR``."""

    verbosity: int = 0
    quiet: bool = False
    color: bool = True
    _console: Any = None

    @classmethod
    def from_flags(cls, verbose: int, quiet: bool, no_color: bool) -> Output:
        """Colour is off with ``--no-color`` or any non-empty ``NO_COLOR`` (no-color.org)."""
        color = not no_color and not os.environ.get("NO_COLOR")
        return cls(verbosity=verbose, quiet=quiet, color=color)

    def console(self, *, stderr: bool = False) -> Console:
        """A rich console honouring the colour setting (made on first use)."""
        from rich.console import Console

        if stderr:
            return Console(stderr=True, no_color=not self.color, highlight=False)
        if self._console is None:
            self._console = Console(no_color=not self.color, highlight=False)
        return self._console

    def line(self, text: str) -> None:
        """A plain result line on stdout (always printed: it is the command's answer)."""
        click.echo(text)

    def info(self, text: str) -> None:
        """A progress or summary line on stderr, silenced by ``-q``."""
        if not self.quiet:
            click.echo(text, err=True)

    def detail(self, text: str) -> None:
        """Extra detail on stderr, shown with ``-v``."""
        if self.verbosity > 0 and not self.quiet:
            click.echo(text, err=True)

    def warn(self, text: str) -> None:
        """A warning on stderr (not silenced: warnings matter)."""
        click.echo(
            click.style("warning: ", fg="yellow") + text if self.color else f"warning: {text}",
            err=True,
        )

    def error(self, text: str) -> None:
        """An error line on stderr."""
        prefix = (
            click.style("llem: error: ", fg="red", bold=True) if self.color else "llem: error: "
        )
        click.echo(prefix + text, err=True)


def get_output() -> Output:
    """The Output of the current Click context (defaults outside one)."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if isinstance(ctx.obj, Output):
            return ctx.obj
        ctx = ctx.parent
    return Output(color=sys.stderr.isatty() and not os.environ.get("NO_COLOR"))


#: the logger every llem module's ``logging.getLogger(__name__)`` descends from
LOGGER_NAME = "llem_cli"


class OutputHandler(logging.Handler):
    """Sends log records to the current command's :class:`Output` (warnings stay warnings)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print one record the way the command prints its own lines."""
        try:
            text = self.format(record)
            out = get_output()
            if record.levelno >= logging.ERROR:
                out.error(text)
            elif record.levelno >= logging.WARNING:
                out.warn(text)
            elif record.levelno >= logging.INFO:
                out.info(text)
            else:
                out.detail(text)
        except Exception:  # noqa: BLE001 - logging must never take the command down
            self.handleError(record)


def log_level(out: Output) -> int:
    """``-q``: errors only; default: warnings; ``-v``: info; ``-vv``: debug."""
    if out.quiet:
        return logging.ERROR
    if out.verbosity >= 2:
        return logging.DEBUG
    return logging.INFO if out.verbosity == 1 else logging.WARNING


def configure_logging(out: Output) -> None:
    """Route llem's log records through ``out`` at the level its flags ask for (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, OutputHandler):
            logger.removeHandler(handler)
    logger.addHandler(OutputHandler())
    logger.setLevel(log_level(out))
