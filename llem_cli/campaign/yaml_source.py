"""Load YAML into plain Python data while remembering where every value came from.

pydantic reports errors as paths through the document (``execution.timeout``);
users need ``FILE:LINE:COL``. This loader walks PyYAML's node tree once and
records, for every path, the position of the value and of its key, so any
error path can be turned into a line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in the source file."""

    line: int
    col: int


@dataclass
class SourceDoc:
    """The loaded data and the positions of its keys and values."""

    data: Any
    value_pos: dict[PathKey, Position] = field(default_factory=dict)
    key_pos: dict[PathKey, Position] = field(default_factory=dict)
    #: unquoted values like ``1e-5`` that YAML 1.1 (PyYAML) reads as text, not as a number
    number_like_text: set[PathKey] = field(default_factory=set)

    def position(self, path: PathKey, *, of_key: bool = False) -> Position:
        """Where ``path`` (or its nearest known ancestor) stands in the file."""
        probe = tuple(path)
        while probe:
            table = self.key_pos if of_key else self.value_pos
            if probe in table:
                return table[probe]
            if of_key and probe in self.value_pos:
                return self.value_pos[probe]
            probe = probe[:-1]
        return self.value_pos.get((), Position(1, 1))


class SourceError(Exception):
    """The file cannot be read as a YAML mapping; carries the position to report."""

    def __init__(self, message: str, position: Position | None = None, path: PathKey = ()) -> None:
        super().__init__(message)
        self.message = message
        self.position = position or Position(1, 1)
        self.path = path


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def read_text(path: Path) -> str:
    """Read a campaign file as UTF-8 text, turning every I/O problem into a SourceError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError("file not found (check the path)") from None
    except IsADirectoryError:
        raise SourceError("is a directory, not a campaign file") from None
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc.strerror}") from None
    if b"\x00" in raw:
        raise SourceError("binary file, not a YAML campaign (contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SourceError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            Position(line, 1),
        ) from None


#: most values (scalars, lists, mappings) a campaign may hold once aliases are expanded: a few
#: nested aliases ("billion laughs") would otherwise expand to more than memory or time allow
MAX_VALUES = 200_000


def _reader_error(text: str, exc: yaml.reader.ReaderError) -> SourceError:
    """A character YAML does not allow (a control character): one line, with its position."""
    before = text[: max(0, exc.position)]
    pos = Position(before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
    char = exc.character
    code = f"#x{char:04x}" if isinstance(char, int) else repr(char)
    return SourceError(f"YAML error: character {code} is not allowed in a YAML file", pos)


def load_source(text: str) -> SourceDoc:
    """Parse ``text`` into data plus positions; the top level must be a mapping."""
    try:
        loader = yaml.SafeLoader(text)  # checks every character once, for a str
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    try:
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        problem = exc.problem or "invalid YAML"
        ctx_mark = exc.context_mark
        if exc.context and ctx_mark is not None and ctx_mark.line + 1 != pos.line:
            problem += f" ({exc.context} at line {ctx_mark.line + 1}, column {ctx_mark.column + 1})"
        raise SourceError(f"YAML syntax error: {problem}", pos) from None
    except yaml.YAMLError as exc:
        raise SourceError("YAML error: " + " ".join(str(exc).split())) from None
    except RecursionError:
        raise SourceError("YAML nested too deeply") from None
    finally:
        loader.dispose()
    if node is None:
        raise SourceError("empty file: a campaign needs at least name, compose and backends")
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise SourceError(f"the file is {kind}, not a mapping of campaign fields", _mark(node))
    doc = SourceDoc(data=None)
    try:
        doc.data = _build(loader, node, (), doc, set(), [MAX_VALUES])
    except RecursionError:
        raise SourceError("YAML nested too deeply") from None
    return doc


_STR_TAG = "tag:yaml.org,2002:str"
#: a number in exponent form that YAML 1.1's float rule misses (it needs a dot: 1.0e-5)
_EXPONENT_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: PathKey,
    doc: SourceDoc,
    active: set[int],
    budget: list[int],
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise SourceError(
            f"the YAML expands to more than {MAX_VALUES} values (aliases of aliases?)",
            _mark(node),
            path,
        )
    doc.value_pos[path] = _mark(node)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in active:  # an alias to one of its own ancestors: infinite data
            raise SourceError("recursive YAML alias (a node contains itself)", _mark(node), path)
        active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SourceError("a mapping key must be a plain value", _mark(key_node), path)
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SourceError("YAML merge keys (<<) are not supported", _mark(key_node), path)
            key = _construct(loader, key_node, path)
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in result:
                raise SourceError(f"duplicate key '{key}'", _mark(key_node), child)
            doc.key_pos[child] = _mark(key_node)
            result[key] = _build(loader, value_node, child, doc, active, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), doc, active, budget)
            for i, item in enumerate(node.value)
        ]
    if (
        isinstance(node, yaml.ScalarNode)  # always, past the two collection kinds above
        and node.style is None
        and node.tag == _STR_TAG
        and _EXPONENT_NUMBER.match(node.value)
    ):
        doc.number_like_text.add(path)
    return _construct(loader, node, path)


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: PathKey) -> Any:
    """A scalar's value, keys included (a ``!!python/...`` tag on a key crashed validation)."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise SourceError(f"cannot read value: {exc.problem}", _mark(node), path) from None


def child(node: Any, part: str | int) -> tuple[bool, Any]:
    """Step one path segment into loaded data: (found, value)."""
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None
