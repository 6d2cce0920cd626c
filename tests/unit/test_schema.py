"""`llem schema`: the JSON Schema editors use, checked by hand on the shared DESIGN.md example."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from llem_cli.campaign.durations import parse_duration
from llem_cli.cli import cli

DESIGN_EXAMPLE = """\
name: llama-batch
compose: ../compose/docker-compose.yml
project: llem-llama-batch
backends:
  pytorch:
    service: pytorch
    command: [lem-bench, --model, "{model}", --batch-size, "{batch_size}"]
    gpus: [0]
    env: {HF_HUB_OFFLINE: "1"}
    metrics:
      output_tokens: num_output_tokens
      output_tokens_per_s: performance.output_throughput
  vllm:
    command: [vllm-bench, "{model}"]
    metrics:
      output_tokens: {multiply: [num_requests], params: [batch_size]}
      requests_per_s: {params: [batch_size], divide_by: results.0.elapsed_s}
grid:
  backend: [pytorch, vllm]
  model: [meta-llama/Llama-3.2-1B]
  batch_size: [1, 8, 32]
per_backend:
  vllm: {gpu_memory_utilization: [0.8, 0.9]}
experiments:
  - {backend: pytorch, model: gpt2, batch_size: 64}
exclude:
  - {backend: vllm, batch_size: 1}
execution:
  cycles: 3
  order: interleaved
  seed: 0
  timeout: 30m
  retries: 1
  gap: 60s
  cycle_gap: 5m
  thermal: {max_temp_c: 45, max_wait: 10m}
  idle_baseline: 30s
health:
  probe: nvidia-smi
  every: 1
  max_memory_used_pct: 90
  max_restarts: 3
  restart_backoff: 5s
results: results
"""


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    return json.loads(result.output)


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (and a one-branch-plus-null anyOf) to the object schema."""
    if "$ref" in node:
        return schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in node:
        refs = [b for b in node["anyOf"] if "$ref" in b]
        others = [b for b in node["anyOf"] if "$ref" not in b]
        if refs and all(b == {"type": "null"} for b in others):
            return resolve(schema, refs[0])
    return node


def test_schema_is_json_with_the_top_level_fields(schema: dict[str, Any]) -> None:
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "compose", "backends"}
    expected = {
        "name", "compose", "project", "backends", "grid", "per_backend",
        "experiments", "exclude", "gpu_settings", "execution", "health", "results",
    }  # fmt: skip
    assert set(schema["properties"]) == expected
    assert schema["properties"]["name"]["type"] == "string"
    assert set(schema["$defs"]) >= {"Backend", "Execution", "Health", "Thermal"}


def test_unknown_keys_are_refused_at_every_level(schema: dict[str, Any]) -> None:
    for name in ("Backend", "Execution", "Health", "Thermal", "Metrics", "MetricFormula"):
        assert schema["$defs"][name]["additionalProperties"] is False, name


def test_metrics_publish_exactly_the_normalized_names(schema: dict[str, Any]) -> None:
    from llem_cli.campaign.model import METRIC_NAMES

    backend = schema["$defs"]["Backend"]["properties"]
    assert resolve(schema, backend["metrics"]) == schema["$defs"]["Metrics"]
    assert tuple(schema["$defs"]["Metrics"]["properties"]) == METRIC_NAMES
    formula = schema["$defs"]["MetricFormula"]["properties"]
    assert set(formula) == {"multiply", "params", "divide_by"}


def test_backend_publishes_loads_model_with_its_meaning(schema: dict[str, Any]) -> None:
    """A backend's window includes model load unless it says otherwise; a serving backend's
    default is false (its client talks to a server already loaded)."""
    prop = schema["$defs"]["Backend"]["properties"]["loads_model"]
    assert {"type": "boolean"} in prop["anyOf"] and prop["default"] is None
    assert "measurement.includes_model_load" in prop["description"]
    assert "false for a serving backend" in prop["description"]
    assert "loads_model" not in schema["$defs"]["Backend"].get("required", [])


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ("performance.output_throughput", True),
        ("results.0.tokens", True),
        ({"params": ["batch_size"]}, True),
        ({"multiply": ["a.b"], "divide_by": "t"}, True),
        ("", False),
        ("a..b", False),
        ("has blank", False),
        (5, False),
        ({}, False),
        ({"divide_by": "t"}, False),
        ({"param": ["x"]}, False),
    ],
)
def test_jsonschema_metric_sources_agree_with_validate(
    schema: dict[str, Any], source: object, ok: bool
) -> None:
    import jsonschema  # a dev dependency (setup.cfg): never skipped

    data = yaml.safe_load(DESIGN_EXAMPLE)
    data["backends"]["vllm"]["metrics"] = {"ttft_ms": source}
    assert _validate_accepts(data) is ok
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert (not errors) is ok, [e.message for e in errors]
    assert (check(schema, schema, data, "$") == []) is ok


def test_backend_requires_command(schema: dict[str, Any]) -> None:
    backend = schema["$defs"]["Backend"]
    assert backend["required"] == ["command"]
    assert backend["properties"]["command"]["type"] == "array"


def test_enums_and_ranges(schema: dict[str, Any]) -> None:
    execution = schema["$defs"]["Execution"]["properties"]
    assert execution["order"]["enum"] == ["interleaved", "shuffled", "grouped"]
    assert execution["cycles"]["minimum"] == 1
    health = schema["$defs"]["Health"]["properties"]
    assert health["max_memory_used_pct"]["maximum"] == 100
    assert health["max_memory_used_pct"]["exclusiveMinimum"] == 0


def _duration_ok(node: dict[str, Any], value: object) -> bool:
    branches = node.get("anyOf", [node])
    for branch in branches:
        if "anyOf" in branch and _duration_ok(branch, value):
            return True
        if branch.get("type") == "number" and isinstance(value, int | float):
            return value >= branch.get("minimum", float("-inf"))
        is_text = branch.get("type") == "string" and isinstance(value, str)
        if is_text and re.fullmatch(branch["pattern"].strip("^$"), value):
            return True
    return False


def test_duration_pattern_agrees_with_the_parser(schema: dict[str, Any]) -> None:
    timeout = schema["$defs"]["Execution"]["properties"]["timeout"]
    for good in ("90", "90s", "5m", "1h30m", "250ms", "1.5h", 90, 0.5):
        assert _duration_ok(timeout, good), good
        parse_duration(good)
    for bad in ("5x", "five", "", -1):
        assert not _duration_ok(timeout, bad), bad
        with pytest.raises(ValueError):
            parse_duration(bad)


def check(schema: dict[str, Any], node: dict[str, Any], value: Any, where: str) -> list[str]:
    """A hand check of the subset of JSON Schema the campaign schema uses."""
    node = resolve(schema, node)
    problems: list[str] = []
    if "anyOf" in node and "type" not in node:
        if not any(not check(schema, branch, value, where) for branch in node["anyOf"]):
            problems.append(f"{where}: matches no branch")
        return problems
    if "oneOf" in node:
        matches = sum(not check(schema, branch, value, where) for branch in node["oneOf"])
        if matches != 1:
            problems.append(f"{where}: matches {matches} branches, not one")
        return problems
    kind = node.get("type")
    types = {
        "object": dict, "array": list, "string": str, "integer": int,
        "number": (int, float), "boolean": bool, "null": type(None),
    }  # fmt: skip
    if kind and not isinstance(value, types[kind]):
        return [f"{where}: not {kind}"]
    if kind in ("integer", "number") and isinstance(value, bool):
        return [f"{where}: boolean for {kind}"]
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{where}: not in enum")
    if "pattern" in node and not re.search(node["pattern"], value):
        problems.append(f"{where}: pattern")
    if "minimum" in node and value < node["minimum"]:
        problems.append(f"{where}: minimum")
    if "maximum" in node and value > node["maximum"]:
        problems.append(f"{where}: maximum")
    if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
        problems.append(f"{where}: exclusiveMinimum")
    if kind == "array":
        if len(value) < node.get("minItems", 0):
            problems.append(f"{where}: minItems")
        for index, item in enumerate(value):
            problems += check(schema, node.get("items", {}), item, f"{where}[{index}]")
    if kind == "object":
        alternatives = node.get("anyOf", [])  # required-key alternatives beside the type
        if alternatives and not any(all(k in value for k in a["required"]) for a in alternatives):
            problems.append(f"{where}: needs one of {[a['required'] for a in alternatives]}")
        for name in node.get("required", []):
            if name not in value:
                problems.append(f"{where}.{name}: required")
        for key, item in value.items():
            if key in node.get("properties", {}):
                problems += check(schema, node["properties"][key], item, f"{where}.{key}")
                continue
            pattern = next(
                (p for p in node.get("patternProperties", {}) if re.search(p, key)), None
            )
            if pattern is not None:
                problems += check(
                    schema, node["patternProperties"][pattern], item, f"{where}.{key}"
                )
            elif isinstance(node.get("additionalProperties"), dict):
                problems += check(schema, node["additionalProperties"], item, f"{where}.{key}")
            elif node.get("additionalProperties") is False or "patternProperties" in node:
                problems.append(f"{where}.{key}: not allowed")
    return problems


def test_design_example_validates_against_the_schema(schema: dict[str, Any]) -> None:
    data = yaml.safe_load(DESIGN_EXAMPLE)
    assert check(schema, schema, data, "$") == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.pop("name"), "$.name: required"),
        (lambda d: d.update(name="Bad Name"), "$.name: pattern"),
        (lambda d: d.update(exectuion={}), "$.exectuion: not allowed"),
        (lambda d: d["execution"].update(order="random"), "$.execution.order: not in enum"),
        (lambda d: d["execution"].update(cycles=0), "$.execution.cycles: minimum"),
        (lambda d: d["health"].update(max_memory_used_pct=150), "max_memory_used_pct: maximum"),
        (lambda d: d["backends"]["pytorch"].pop("command"), "pytorch.command: required"),
        (lambda d: d["execution"].update(timeout="5x"), "$.execution.timeout: matches no branch"),
        (
            lambda d: d["backends"]["vllm"]["metrics"].update(tokens="x"),
            "$.backends.vllm.metrics.tokens: not allowed",
        ),
        (
            lambda d: d["backends"]["vllm"]["metrics"].update(ttft_ms="a..b"),
            "metrics.ttft_ms: matches no branch",
        ),
        (
            lambda d: d["backends"]["vllm"]["metrics"].update(itl_ms={"divide_by": "t"}),
            "metrics.itl_ms: matches no branch",
        ),
    ],
)
def test_the_hand_check_catches_mistakes(schema: dict[str, Any], edit: Any, problem: str) -> None:
    data = yaml.safe_load(DESIGN_EXAMPLE)
    edit(data)
    problems = check(schema, schema, data, "$")
    assert any(problem in p for p in problems), problems


def test_jsonschema_agrees_when_installed(schema: dict[str, Any]) -> None:
    import jsonschema  # a dev dependency (setup.cfg): never skipped

    jsonschema.validate(yaml.safe_load(DESIGN_EXAMPLE), schema)


# ---- command items: strings and numbers, as validate accepts them ------------------------------

COMMAND_ITEMS = [
    ("--batch-size", True),
    ("{batch_size}", True),
    (8, True),
    (0.5, True),
    (-1, True),
    (True, False),
    (False, False),
    (None, False),
    ({"a": 1}, False),
    ([1], False),
]


def _with_item(item: object, where: str) -> dict[str, Any]:
    data = yaml.safe_load(DESIGN_EXAMPLE)
    if where == "command":
        data["backends"]["pytorch"]["command"] = ["lem-bench", "--batch-size", item]
    else:
        data["health"]["probe"] = ["smi", item]
    return dict(data)


def _validate_accepts(data: dict[str, Any]) -> bool:
    from pydantic import ValidationError

    from llem_cli.campaign.model import Campaign

    try:
        Campaign.model_validate(data)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("where", ["command", "probe"])
@pytest.mark.parametrize(("item", "ok"), COMMAND_ITEMS)
def test_schema_command_items_agree_with_validate(
    schema: dict[str, Any], where: str, item: object, ok: bool
) -> None:
    data = _with_item(item, where)
    assert _validate_accepts(data) is ok  # what validate accepts is unchanged
    assert (check(schema, schema, data, "$") == []) is ok


@pytest.mark.parametrize("where", ["command", "probe"])
@pytest.mark.parametrize(("item", "ok"), COMMAND_ITEMS)
def test_jsonschema_command_items_agree_with_validate(
    schema: dict[str, Any], where: str, item: object, ok: bool
) -> None:
    import jsonschema  # a dev dependency (setup.cfg): never skipped

    data = _with_item(item, where)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert (not errors) is ok, [e.message for e in errors]


def test_validate_turns_numbers_in_command_into_strings() -> None:
    from llem_cli.campaign.model import Campaign

    campaign = Campaign.model_validate(_with_item(8, "command"))
    assert campaign.backends["pytorch"].command == ["lem-bench", "--batch-size", "8"]
