"""``{name}`` placeholders in a backend's command.

Rules (docs/design.md): ``{name}`` with an identifier is a placeholder, ``{{name}}``
is a literal ``{name}``, ``${VAR}`` belongs to the container's shell, and any
other brace text (JSON) is left alone. One regular expression scans each item
once so the three cases can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

BUILTINS = ("run_id", "key", "config_id", "cycle", "backend", "experiment_dir")
#: built-ins that change from one experiment to the next: a server's argv may not use them (a
#: server would start for every experiment)
PER_EXPERIMENT = ("key", "config_id", "cycle", "experiment_dir")

_TOKEN = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\$\{[^}]*\}|\{([A-Za-z_]\w*)\}")


def placeholder_names(item: str) -> Iterator[str]:
    """Yield the placeholder names used in one command item, in order."""
    for match in _TOKEN.finditer(item):
        if match.group(2):
            yield match.group(2)


def render(item: str, values: Mapping[str, object]) -> str:
    """Substitute placeholders in ``item``; every name must be in ``values``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "{" + match.group(1) + "}"
        if match.group(2):
            return render_value(values[match.group(2)])
        return match.group(0)

    return _TOKEN.sub(replace, item)


def render_value(value: object) -> str:
    """A param as it appears in a command: booleans lower-case, like YAML wrote them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
