"""``result.json`` merging (runner/records.read_metrics) on real files."""

from __future__ import annotations

import json
from pathlib import Path

from llem_cli.runner.records import MAX_RESULT_BYTES, read_metrics


def test_a_small_result_is_merged(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text('{"tokens": 128, "latency_s": 0.5}')
    assert read_metrics(tmp_path) == ({"tokens": 128, "latency_s": 0.5}, None)


def test_a_huge_result_is_not_merged_and_says_why(tmp_path: Path) -> None:
    samples = list(range(MAX_RESULT_BYTES // 4))  # per-request samples: well over the cap
    (tmp_path / "result.json").write_text(json.dumps({"tokens": 1, "samples": samples}))
    assert (tmp_path / "result.json").stat().st_size > MAX_RESULT_BYTES
    metrics, why = read_metrics(tmp_path)
    assert metrics is None
    assert why is not None and "not merged" in why and str(MAX_RESULT_BYTES) in why


def test_a_result_at_the_cap_is_merged(tmp_path: Path) -> None:
    head = '{"pad": "'
    text = head + "x" * (MAX_RESULT_BYTES - len(head) - 2) + '"}'
    (tmp_path / "result.json").write_text(text)
    assert (tmp_path / "result.json").stat().st_size == MAX_RESULT_BYTES
    metrics, why = read_metrics(tmp_path)
    assert why is None and metrics is not None and len(metrics["pad"]) > 1000


def test_not_an_object_or_not_json(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("[1, 2]")
    assert read_metrics(tmp_path) == (None, "result.json is not a JSON object")
    (tmp_path / "result.json").write_text("{nope")
    metrics, why = read_metrics(tmp_path)
    assert metrics is None and why is not None and why.startswith("result.json unreadable")
