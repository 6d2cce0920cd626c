"""`llem validate` on the corpus of malformed campaign files in tests/corpus/.

Each file has one main defect; tests/corpus/expected.yaml says where `llem validate`
must report it (line, column, field path) and with which words. Every file must exit 2
and no output may ever hold a Python traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llem_cli.cli import cli

CORPUS = Path(__file__).parents[1] / "corpus"
EXPECTED: dict[str, dict] = yaml.safe_load((CORPUS / "expected.yaml").read_text())
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>.+?): (?P<msg>.*)$")

# Messages asserted word for word (file -> the whole line after FILE:).
EXACT = {
    "bad_name.yaml": "1:7: name: must be lowercase letters, digits, '-' or '_', "
    "starting with a letter or digit",
    "unknown_top_key.yaml": "8:1: exectuion: unknown key 'exectuion' (did you mean 'execution'?)",
    "unknown_backend_key.yaml": "5:5: backends.pytorch.servce: unknown key 'servce' "
    "(did you mean 'service'?)",
    "missing_command.yaml": "5:5: backends.pytorch.command: required field is missing",
    "duration_bad_unit.yaml": "9:12: execution.timeout: '5x' is not a duration: "
    "use 90, 90s, 5m or 1h30m",
    "duration_boolean.yaml": "9:8: execution.gap: expected a duration such as 90, 90s, 5m or "
    "1h30m, got a boolean",
    "duration_negative.yaml": "9:14: execution.cycle_gap: a duration cannot be negative",
    "placeholder_no_param.yaml": "5:31: backends.pytorch.command[2]: placeholder {batchsize} "
    "matches no param of 'pytorch' (params: batch_size; built-ins: run_id, key, config_id, "
    "cycle, backend, experiment_dir); write {{batchsize}} for a literal",
    "placeholder_some_configs.yaml": "5:56: backends.pytorch.command[4]: placeholder {model} is "
    "missing from some configurations of 'pytorch' (e.g. experiments[0]); "
    "add it there or write {{model}}",
    "backend_value_unknown.yaml": "9:22: grid.backend[1]: 'vlm' names no backend "
    "(backends: pytorch, vllm)",
    "experiment_without_backend.yaml": "11:5: experiments[0]: needs a 'backend' key "
    "(backends: pytorch, vllm)",
    "compose_missing.yaml": "2:10: compose: compose file not found: no-such-compose.yml "
    "(paths are relative to the campaign file)",
    "command_boolean.yaml": "5:30: backends.pytorch.command[2]: command items must be strings, "
    "got a boolean (quote it)",
    "command_null.yaml": "8:9: backends.pytorch.command[2]: command items must be strings, "
    "got null (quote it)",
    "cycles_zero.yaml": "9:11: execution.cycles: input should be greater than or equal to 1",
    "empty.yaml": "1:1: (file): empty file: a campaign needs at least name, compose and backends",
    "list_file.yaml": "1:1: (file): the file is a list, not a mapping of campaign fields",
    "binary.yaml": "1:1: (file): binary file, not a YAML campaign (contains NUL bytes)",
    "latin1.yaml": "3:1: (file): not valid UTF-8 (byte 0xe9); save the file as UTF-8",
    "missing.yaml": "1:1: (file): file not found (check the path)",
    "duplicate_key.yaml": "8:1: name: duplicate key 'name'",
    "yaml_syntax_error.yaml": "6:1: (file): YAML syntax error: expected ',' or ']', but got "
    "'<scalar>' (while parsing a flow sequence at line 5, column 14)",
    "all_excluded.yaml": "1:1: (file): the campaign expands to no configuration "
    "(add a grid or experiments)",
    "metrics_unknown_name.yaml": "8:7: backends.pytorch.metrics.outptu_tokens_per_s: unknown "
    "key 'outptu_tokens_per_s' (did you mean 'output_tokens_per_s'?)",
    "metrics_not_a_path.yaml": "7:22: backends.vllm.metrics.output_tokens: expected a dotted "
    "path into result.json, or a mapping with multiply, params and divide_by",
}


def parse(output: str) -> list[dict]:
    """The FILE:LINE:COL lines of an output, as dicts (warnings flagged)."""
    found = []
    for raw in output.splitlines():
        match = LINE.match(raw)
        if match:
            item = match.groupdict()
            item["line"], item["col"] = int(item["line"]), int(item["col"])
            item["warning"] = item["msg"].startswith("warning: ")
            found.append(item)
    return found


@pytest.fixture
def in_corpus(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(CORPUS)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return CORPUS


def test_corpus_is_big_enough_and_fully_described() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.suffix == ".yaml" and p.name != "expected.yaml"}
    assert len(files) >= 35
    assert files == set(EXPECTED) - {"missing.yaml"}
    assert not (CORPUS / "missing.yaml").exists()
    # every file references the shared compose file, which is itself valid YAML
    assert "services" in yaml.safe_load((CORPUS / "compose.yml").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_reports_the_defect(name: str, in_corpus: Path) -> None:
    want = EXPECTED[name]
    result = CliRunner().invoke(cli, ["validate", name])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = parse(result.output)
    errors = [line for line in lines if not line["warning"]]
    assert len(errors) == want.get("errors", 1), result.output
    assert all(line["file"] == name for line in lines)
    hits = [line for line in errors if line["path"] == want["path"]]
    assert hits, f"no error names {want['path']!r}:\n{result.output}"
    hit = hits[0]
    assert (hit["line"], hit["col"]) == (want["line"], want["col"]), result.output
    assert want["contains"] in hit["msg"], result.output
    if name in EXACT:
        assert f"{name}:{EXACT[name]}" in result.output.splitlines()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_refuses_the_same_files(name: str, in_corpus: Path) -> None:
    """validate and plan share one loader: what validate rejects, plan rejects with exit 2."""
    result = CliRunner().invoke(cli, ["plan", name, "--json"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    want = EXPECTED[name]
    assert f"{name}:{want['line']}:{want['col']}: {want['path']}: " in result.stderr
    assert "invalid campaign" in result.stderr


def test_every_problem_of_a_multi_error_file_is_reported(in_corpus: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "multi_error.yaml"])
    assert result.exit_code == 2
    lines = parse(result.output)
    assert [(line["line"], line["path"]) for line in lines] == [
        (1, "name"),
        (9, "execution.cycles"),
        (10, "execution.timeout"),
        (11, "execution.order"),
        (13, "health.max_memory_used_pct"),
    ]
    expected = (
        "multi_error.yaml:11:10: execution.order: "
        "input should be 'interleaved', 'shuffled' or 'grouped'"
    )
    assert expected in result.output.splitlines()


def test_several_files_at_once_report_each(in_corpus: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "bad_name.yaml", "cycles_zero.yaml"])
    assert result.exit_code == 2
    assert {line["file"] for line in parse(result.output)} == {"bad_name.yaml", "cycles_zero.yaml"}


def test_a_directory_is_not_a_campaign(in_corpus: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.output
    assert "Traceback" not in result.output


def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 3000 + "]" * 3000 + "\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!python/name:os.system", "cannot read value"),
        ("!!python/object/apply:os.system [touch pwned]", "input should be a valid string"),
    ],
)
def test_python_tags_are_refused_not_executed(value: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text(f"name: {value}\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1:7: name: {message}" in result.output
    assert not (Path.cwd() / "pwned").exists()


# --- real processes: the installed console script and `python -m llem_cli` -------------------


def _llem_binary() -> Path:
    candidate = Path(sys.executable).parent / "llem"
    # make venv installs the package (pip install -e), which puts the script there
    assert candidate.exists(), f"no llem console script at {candidate}: run pip install -e ."
    return candidate


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLEM_")}
    return subprocess.run(
        argv, cwd=CORPUS, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_console_script_on_the_whole_corpus() -> None:
    names = sorted(EXPECTED)
    proc = _run([str(_llem_binary()), "validate", *names])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = parse(proc.stdout)
    for name, want in EXPECTED.items():
        mine = [line for line in lines if line["file"] == name and not line["warning"]]
        assert len(mine) == want.get("errors", 1), name
        assert any(
            (line["line"], line["col"], line["path"]) == (want["line"], want["col"], want["path"])
            for line in mine
        ), name


@pytest.mark.parametrize("name", ["yaml_syntax_error.yaml", "latin1.yaml", "gpus_negative.yaml"])
def test_python_dash_m(name: str) -> None:
    proc = _run([sys.executable, "-m", "llem_cli", "validate", name])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    want = EXPECTED[name]
    assert proc.stdout.startswith(f"{name}:{want['line']}:{want['col']}: {want['path']}: ")


def test_console_script_plan_on_invalid_file() -> None:
    proc = _run([str(_llem_binary()), "plan", "multi_error.yaml"])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.count("multi_error.yaml:") == 5
    assert "invalid campaign (5 problems)" in proc.stderr


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text((CORPUS / "compose.yml").read_text())
    path = tmp_path / "warn.yaml"
    path.write_text(
        "name: demo\ncompose: compose.yml\nbackends:\n  pytorch:\n"
        '    command: [bench, "{batch_size}"]\n'
        "grid:\n  batch_size: [1, 2]\nexclude:\n  - {batch_size: 3}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{path}:9:5: exclude[0]: warning: matches no configuration",
        f"{path}: valid: 2 configurations, 2 experiments, 1 backend",
    ]
