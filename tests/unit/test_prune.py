"""OOM-aware pruning: only same-backend configurations that are larger on a listed axis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from llem_cli.runner.prune import dominates, to_prune


@dataclass(frozen=True)
class Cfg:
    key: str
    backend: str
    params: dict[str, Any] = field(default_factory=dict)


BASE = {"model": "gpt2", "batch_size": 8, "seq_len": 512}


def cfg(key, backend="pytorch", **changes):
    return Cfg(key, backend, {**BASE, **changes})


@pytest.mark.parametrize(
    ("failed", "candidate", "axes", "pruned"),
    [
        (BASE, {**BASE, "batch_size": 16}, ["batch_size"], True),
        (BASE, {**BASE, "batch_size": 8.5}, ["batch_size"], True),
        (BASE, BASE, ["batch_size"], False),
        (BASE, {**BASE, "batch_size": 4}, ["batch_size"], False),
        (BASE, {**BASE, "batch_size": 16, "model": "opt"}, ["batch_size"], False),
        (BASE, {**BASE, "seq_len": 1024}, ["batch_size"], False),
        (BASE, {**BASE, "seq_len": 1024}, ["batch_size", "seq_len"], True),
        (BASE, {**BASE, "batch_size": 16, "seq_len": 1024}, ["batch_size", "seq_len"], True),
        (BASE, {**BASE, "batch_size": 16, "seq_len": 256}, ["batch_size", "seq_len"], False),
        (BASE, {**BASE, "batch_size": "16"}, ["batch_size"], False),
        ({**BASE, "batch_size": "auto"}, {**BASE, "batch_size": 16}, ["batch_size"], False),
        (BASE, {**BASE, "batch_size": True}, ["batch_size"], False),
        ({**BASE, "batch_size": 1}, {**BASE, "batch_size": 2, "flag": True}, ["batch_size"], False),
        ({**BASE, "flag": 1}, {**BASE, "batch_size": 16, "flag": True}, ["batch_size"], False),
        (BASE, {**BASE, "batch_size": float("nan")}, ["batch_size"], False),
        (BASE, {**BASE, "batch_size": float("inf")}, ["batch_size"], False),
        (BASE, {"model": "gpt2", "batch_size": 16}, ["batch_size"], False),
        (
            {**BASE, "dtype": "auto"},
            {**BASE, "dtype": "auto", "batch_size": 16},
            ["batch_size", "dtype"],
            True,
        ),
        (
            {**BASE, "dtype": "fp16"},
            {**BASE, "dtype": "fp32", "batch_size": 16},
            ["batch_size", "dtype"],
            False,
        ),
    ],
    ids=[
        "larger",
        "larger-float",
        "equal",
        "smaller",
        "other-param-differs",
        "larger-on-unlisted-axis",
        "larger-on-second-listed-axis",
        "larger-on-both",
        "larger-on-one-smaller-on-other",
        "numeric-string",
        "failed-non-numeric",
        "bool-is-not-a-size",
        "extra-param",
        "true-is-not-1",
        "nan",
        "infinity",
        "missing-param",
        "equal-non-numeric-listed-axis-is-neutral",
        "differing-non-numeric-listed-axis",
    ],
)
def test_dominates(failed, candidate, axes, pruned):
    assert dominates(failed, candidate, axes) is pruned


def test_to_prune_keeps_backend_and_order():
    remaining = [
        cfg("a", batch_size=32),
        cfg("b", batch_size=4),
        cfg("c", backend="vllm", batch_size=32),
        cfg("d", batch_size=16),
        cfg("e", batch_size=16, model="opt"),
        cfg("f", batch_size=8),
    ]
    got = to_prune("pytorch", BASE, remaining, ["batch_size"])
    assert [c.key for c in got] == ["a", "d"]
    assert got[0] is remaining[0]


def test_no_axes_prunes_nothing():
    assert to_prune("pytorch", BASE, [cfg("a", batch_size=64)], []) == []


def test_accepts_a_generator():
    got = to_prune(
        "pytorch", BASE, (cfg(k, batch_size=n) for k, n in [("x", 9), ("y", 1)]), ["batch_size"]
    )
    assert [c.key for c in got] == ["x"]
