"""Read the service names of a compose file with PyYAML alone: ``llem validate`` needs no engine.

Only the node tree is composed (aliases stay shared nodes, so an alias bomb costs nothing), and
only the top-level keys and the keys of ``services`` are read, merge keys (``<<``) included, as
Compose reads them. Several YAML documents in one file add up, as in Compose v2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

#: compose files larger than this are not read (their services are then not checked)
MAX_BYTES = 8 * 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class ComposeServices:
    """What one compose file declares: its services in order, and whether it includes others."""

    services: tuple[str, ...]
    has_include: bool


class ComposeFileError(Exception):
    """The file is not a compose file llem (or Compose) can read; ``message`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _at(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return "null"
    return "a single value"


def _items(node: yaml.MappingNode, seen: set[int]) -> list[tuple[str, yaml.Node]]:
    """The (key, value) pairs of a mapping with its merge keys expanded; explicit keys win."""
    seen = seen | {id(node)}
    own: list[tuple[str, yaml.Node]] = []
    merged: list[tuple[str, yaml.Node]] = []
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:
                if isinstance(source, yaml.MappingNode) and id(source) not in seen:
                    merged += _items(source, seen)
        elif isinstance(key, yaml.ScalarNode):
            own.append((str(key.value), value))
    names = {name for name, _ in own}
    return own + [(name, value) for name, value in merged if name not in names]


def _duplicate(node: yaml.MappingNode) -> str | None:
    """The first key written twice in ``node`` (Compose refuses those), with where."""
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
            if key.value in seen:
                return f"key '{key.value}' is written twice ({_at(key)})"
            seen.add(key.value)
    return None


class _Loader(yaml.SafeLoader):
    """Anchors as Compose (go-yaml) reads them: they stay defined from one document to the
    next, and an anchor defined again names the later node instead of being an error."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if not isinstance(event, yaml.AliasEvent) and getattr(event, "anchor", None):
            self.anchors.pop(event.anchor, None)
        # types-PyYAML says int; PyYAML passes a sequence index, the mapping key's node or None
        return super().compose_node(parent, index)  # type: ignore[arg-type]

    def compose_document(self) -> yaml.Node | None:
        self.get_event()  # DocumentStart
        node = self.compose_node(None, None)
        self.get_event()  # DocumentEnd
        return node


def _documents(text: str) -> list[yaml.Node]:
    loader = _Loader(text)
    try:
        nodes = []
        while loader.check_node():
            node = loader.get_node()
            empty = isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
            if node is not None and not (empty and not node.value):
                nodes.append(node)
        return nodes
    finally:
        loader.dispose()


def _yaml_error(text: str, exc: yaml.YAMLError) -> str:
    """One line for a YAML error, with its line and column in the compose file."""
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: max(0, exc.position)]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character
        code = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        return f"character {code} is not allowed in YAML (line {line}, column {col})"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        context = exc.context_mark
        if exc.problem and exc.context and context and mark and context.line != mark.line:
            problem += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
        return f"YAML syntax error{where}: {problem}"
    return "YAML error: " + " ".join(str(exc).split())


def parse_compose_services(text: str) -> ComposeServices:
    """The services ``text`` declares; ComposeFileError when Compose could not read it either."""
    try:
        documents = _documents(text)
        if not documents:
            raise ComposeFileError("the file is empty")
        return _services(documents)
    except yaml.YAMLError as exc:
        raise ComposeFileError(_yaml_error(text, exc)) from None
    except RecursionError:
        raise ComposeFileError("YAML nested too deeply") from None


def _services(documents: list[yaml.Node]) -> ComposeServices:
    services: list[str] = []
    has_include = False
    for node in documents:
        if not isinstance(node, yaml.MappingNode):
            raise ComposeFileError(f"the top level is {_kind(node)}, not a mapping ({_at(node)})")
        duplicate = _duplicate(node)
        if duplicate:
            raise ComposeFileError(duplicate)
        top = dict(_items(node, set()))
        has_include = has_include or "include" in top
        if "services" not in top:
            continue
        value = top["services"]
        if not isinstance(value, yaml.MappingNode):
            raise ComposeFileError(
                f"'services' must be a mapping of service names, not {_kind(value)} ({_at(value)})"
            )
        duplicate = _duplicate(value)
        if duplicate:
            raise ComposeFileError(f"in 'services': {duplicate}")
        services += [name for name, _ in _items(value, set()) if name not in services]
    return ComposeServices(tuple(services), has_include)


def read_compose_services(path: Path) -> ComposeServices | None:
    """The services of the compose file at ``path``; None when it is too large to read here.

    Raises ComposeFileError for a file that cannot be read or is not a compose file.
    """
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        raw = path.read_bytes()
    except OSError as exc:
        raise ComposeFileError(f"cannot read the file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start]
        raise ComposeFileError(f"not valid UTF-8 (byte 0x{byte:02x} on line {line})") from None
    return parse_compose_services(text)
