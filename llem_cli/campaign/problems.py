"""A problem found in a campaign file, and its one-line rendering.

The format ``FILE:LINE:COL: field.path: message`` is part of the contract
(docs/design.md) so editors and CI logs can jump to the spot.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from llem_cli.campaign.yaml_source import PathKey, Position

FILE_LEVEL = "(file)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a mistyped ``word``, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def dotted(path: PathKey) -> str:
    """``('backends', 'pytorch', 'command', 2)`` -> ``backends.pytorch.command[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or FILE_LEVEL


@dataclass(frozen=True)
class Problem:
    """One error or warning, located in the file."""

    file: str
    position: Position
    path: PathKey
    message: str
    warning: bool = False

    def render(self) -> str:
        """The contract's one-line form; warnings say so after the path."""
        label = "warning: " if self.warning else ""
        return (
            f"{self.file}:{self.position.line}:{self.position.col}: "
            f"{dotted(self.path)}: {label}{self.message}"
        )
