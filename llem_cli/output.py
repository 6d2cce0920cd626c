"""What llem prints, and how: verbosity, colour, and the lazily-made rich console.

rich is imported only when a command draws a table or a progress display, so
``llem --help`` and ``llem validate`` start fast.
"""

from __future__ import annotations

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
