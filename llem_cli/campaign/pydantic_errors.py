"""Turn pydantic's validation errors into located, readable problems.

pydantic names union branches in error paths (``compose.str``,
``compose.list[str]``); a user never wrote those, so they are dropped and the
branch errors of one field are folded into one message.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from llem_cli.campaign import model as m
from llem_cli.campaign.problems import Problem, did_you_mean
from llem_cli.campaign.yaml_source import PathKey, SourceDoc, child

_UNION_MESSAGES: dict[str, str] = {
    "compose": "expected a compose file path or a list of paths",
    "probe": "expected 'nvidia-smi' or an argv list that prints the same CSV",
    "results": "expected a directory path, or a mapping with dir and per",
}
_SCALAR_MESSAGE = "expected a string, number or boolean (a single value, not a list or mapping)"


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """The model whose fields are allowed at ``path`` (for 'did you mean')."""
    table: dict[PathKey, type[BaseModel]] = {
        (): m.Campaign,
        ("execution",): m.Execution,
        ("execution", "thermal"): m.Thermal,
        ("health",): m.Health,
        ("results",): m.Results,
    }
    if path[:1] == ("backends",):
        by_depth: dict[int, type[BaseModel]] = {2: m.Backend, 3: m.Metrics, 4: m.MetricFormula}
        if len(path) == 2 or (len(path) > 2 and path[2] == "metrics"):
            return by_depth.get(len(path))
    return table.get(path)


def _strip_union_tags(loc: tuple[Any, ...], data: Any) -> tuple[PathKey, bool]:
    """Keep the loc segments a user wrote; say whether a mapping key itself is at fault."""
    path: list[str | int] = []
    node = data
    is_key = False
    for part in loc:
        if part == "[key]":
            is_key = True
        elif (found := child(node, part))[0]:
            path.append(part)
            node = found[1]
        elif isinstance(part, str) and _is_branch_tag(part):
            continue
        else:  # a missing or unknown key: part of the path, nothing below it
            path.append(part)
            node = None
    return tuple(path), is_key


_BRANCH_TAGS = frozenset({"str", "int", "float", "bool", "dict", "count", "list"})


def _is_branch_tag(part: str) -> bool:
    """pydantic's names for union branches (``list[str]``, ``literal['x']``, ``int``), and the
    tags of the model's own discriminated unions (``str``, ``dict``: a metric's source;
    ``count``, ``list``: a backend's ``gpus``)."""
    return any(ch in part for ch in "[]()'") or part in _BRANCH_TAGS


def _message(error: ErrorDetails, path: PathKey) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        unknown = str(path[-1]) if path else "?"
        model = _model_at(path[:-1])
        hint = ""
        if model is not None:
            hint = did_you_mean(unknown, model.model_fields)
            hint = hint or f" (allowed: {', '.join(model.model_fields)})"
        return f"unknown key '{unknown}'{hint}"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        if pattern == m.NAME_PATTERN:
            return "must be lowercase letters, digits, '-' or '_', starting with a letter or digit"
        if pattern == m.IDENT_PATTERN:
            return "must be an identifier (letters, digits and '_', not starting with a digit)"
        if pattern == m.RESULT_PATH_PATTERN:
            return (
                "must be a dotted path into result.json, such as performance.output_throughput "
                "(no empty part, no blanks)"
            )
    if kind in ("model_type", "dict_type"):  # pydantic names its classes; users wrote YAML
        return "expected a mapping (key: value lines)"
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message[:1].lower() + message[1:]


def problems_from_validation(exc: ValidationError, doc: SourceDoc, file: str) -> list[Problem]:
    """One problem per located field, union branches folded into one message."""
    grouped: dict[tuple[PathKey, bool], list[ErrorDetails]] = {}
    for error in exc.errors():
        path, is_key = _strip_union_tags(tuple(error["loc"]), doc.data)
        grouped.setdefault((path, is_key), []).append(error)
    problems = []
    for (path, is_key), errors in grouped.items():
        if len(errors) == 1:
            message = _message(errors[0], path)
        elif path and path[-1] in _UNION_MESSAGES:
            message = _UNION_MESSAGES[str(path[-1])]
        elif all(e["type"].endswith(("_type", "_parsing")) for e in errors):
            message = _SCALAR_MESSAGE
        else:
            message = "; ".join(dict.fromkeys(_message(e, path) for e in errors))
        of_key = is_key or errors[0]["type"] == "extra_forbidden"
        problems.append(Problem(file, doc.position(path, of_key=of_key), path, message))
    problems.sort(key=lambda p: (p.position.line, p.position.col))
    return problems
