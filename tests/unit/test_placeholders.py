"""`{name}` placeholders in commands (docs/design.md §3.3)."""

from __future__ import annotations

import pytest

from llem_cli.campaign.placeholders import BUILTINS, placeholder_names, render, render_value


def test_builtins_are_the_documented_ones() -> None:
    assert set(BUILTINS) == {"run_id", "key", "config_id", "cycle", "backend", "experiment_dir"}


@pytest.mark.parametrize(
    ("item", "names"),
    [
        ("{model}", ["model"]),
        ("--model={model}", ["model"]),
        ("{a}-{b}_{a}", ["a", "b", "a"]),
        ("{{model}}", []),  # literal
        ("${HOME}", []),  # the container shell's
        ("${HOME}/{model}", ["model"]),
        ('{"a": 1, "b": [1, 2]}', []),  # JSON: left alone
        ("{not an identifier}", []),
        ("{1abc}", []),
        ("{}", []),
        ("plain", []),
        ("{_private9}", ["_private9"]),
    ],
)
def test_placeholder_names(item: str, names: list[str]) -> None:
    assert list(placeholder_names(item)) == names


VALUES = {"model": "gpt2", "batch_size": 8, "lr": 0.5, "fp16": True, "key": "abc-c1"}


@pytest.mark.parametrize(
    ("item", "rendered"),
    [
        ("{model}", "gpt2"),
        ("--batch-size={batch_size}", "--batch-size=8"),
        ("{lr}", "0.5"),
        ("{fp16}", "true"),
        ("{{model}}", "{model}"),
        ("{{model}}={model}", "{model}=gpt2"),
        ("${HOME}", "${HOME}"),
        ("${MODEL:-{model}}", "${MODEL:-{model}}"),
        ('{"batch": 4, "x": {"y": 1}}', '{"batch": 4, "x": {"y": 1}}'),
        ("{ model }", "{ model }"),
        ("out/{key}/log", "out/abc-c1/log"),
        ("no braces", "no braces"),
    ],
)
def test_render(item: str, rendered: str) -> None:
    assert render(item, VALUES) == rendered


def test_render_is_single_pass() -> None:
    """A value that looks like a placeholder is not substituted again."""
    assert render("{a}", {"a": "{b}", "b": "x"}) == "{b}"


def test_render_unknown_name_raises() -> None:
    with pytest.raises(KeyError):
        render("{nope}", VALUES)


@pytest.mark.parametrize(
    ("value", "text"), [(True, "true"), (False, "false"), (8, "8"), (0.9, "0.9"), ("x", "x")]
)
def test_render_value(value: object, text: str) -> None:
    assert render_value(value) == text
