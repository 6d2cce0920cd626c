"""Writing a long JSON list without building it, or its text, in memory."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

#: characters of output gathered before each write
_CHUNK = 1 << 16


def write_json_list(items: Iterable[Any], stream: IO[str]) -> None:
    """Write ``items`` as ``json.dumps(list(items), indent=2, default=str)`` plus a newline.

    Byte for byte the same text, one item at a time: an item's own ``indent=2`` text moves
    one level in by indenting every line after its first (JSON text has no raw newline
    inside a string, so every newline in it is a line break of the layout).
    """
    parts: list[str] = []
    size = 0
    first = True
    for item in items:
        text = json.dumps(item, indent=2, default=str).replace("\n", "\n  ")
        parts.append(("[\n  " if first else ",\n  ") + text)
        first = False
        size += len(text)
        if size >= _CHUNK:
            stream.write("".join(parts))
            parts.clear()
            size = 0
    parts.append("[]\n" if first else "\n]\n")
    stream.write("".join(parts))
    stream.flush()
