"""The command tree: version, help with examples, global flags, LLEM_* variables, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llem_cli import __version__
from llem_cli.cli import cli

VALID = """\
name: demo
compose: compose.yml
backends:
  pytorch:
    command: [bench, "{batch_size}"]
grid:
  batch_size: [1, 2, 4]
"""


@pytest.fixture
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("NO_COLOR", "LLEM_NO_COLOR", "LLEM_QUIET", "LLEM_VERBOSE", "LLEM_PLAN_JSON"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "compose.yml").write_text("services:\n  pytorch: {image: busybox}\n")
    path = tmp_path / "c.yaml"
    path.write_text(VALID)
    return path


@pytest.fixture
def invalid(campaign: Path) -> Path:
    path = campaign.with_name("bad.yaml")
    path.write_text(VALID.replace("name: demo", "name: Demo"))
    return path


def invoke(*args: str, **kwargs: object):
    result = CliRunner().invoke(cli, list(args), **kwargs)  # type: ignore[arg-type]
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = invoke(flag)
    assert result.exit_code == 0
    assert result.output == f"llem, version {__version__}\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help(flag: str) -> None:
    result = invoke(flag)
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "llem validate campaigns/demo.yaml" in result.output
    for option in ("--verbose", "--quiet", "--no-color", "--version"):
        assert option in result.output
    for command in cli.commands:
        assert command in result.output


def test_commands_are_listed_in_declaration_order() -> None:
    output = invoke("--help").output
    listing = output[output.index("Commands:") :]
    positions = [listing.index(f"  {name} ") for name in ("validate", "plan", "schema")]
    assert positions == sorted(positions)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_help_has_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"llem {command}" in result.output
    assert f"Usage: cli {command}" in result.output or f"Usage: llem {command}" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("valdate", "x.yaml")
    assert result.exit_code == 2
    assert "No such command 'valdate'" in result.output


def test_validate_needs_a_file() -> None:
    result = invoke("validate")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_validate_valid_file(campaign: Path) -> None:
    result = invoke("validate", str(campaign))
    assert result.exit_code == 0
    assert result.output == f"{campaign}: valid: 3 configurations, 3 experiments, 1 backend\n"


def test_validate_mixed_valid_and_invalid(campaign: Path, invalid: Path) -> None:
    result = invoke("validate", str(campaign), str(invalid))
    assert result.exit_code == 2
    assert f"{campaign}: valid: 3 configurations" in result.output
    assert f"{invalid}:1:7: name: must be lowercase" in result.output


def test_quiet_keeps_results_and_errors(campaign: Path, invalid: Path) -> None:
    ok = invoke("-q", "validate", str(campaign))
    assert ok.exit_code == 0
    assert "valid: 3 configurations" in ok.output
    bad = invoke("--quiet", "validate", str(invalid))
    assert bad.exit_code == 2
    assert f"{invalid}:1:7: name:" in bad.output


def test_verbose_is_accepted(campaign: Path) -> None:
    assert invoke("-vv", "validate", str(campaign)).exit_code == 0


ANSI = "\x1b["


def test_errors_are_coloured_by_default_on_a_terminal(invalid: Path) -> None:
    result = invoke("plan", str(invalid), color=True)
    assert result.exit_code == 2
    assert ANSI in result.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--no-color"], {}),
        ([], {"NO_COLOR": "1"}),
        ([], {"LLEM_NO_COLOR": "1"}),
    ],
)
def test_no_color(invalid: Path, args: list[str], env: dict[str, str]) -> None:
    result = invoke(*args, "plan", str(invalid), color=True, env=env)
    assert result.exit_code == 2
    assert "llem: error: invalid campaign" in result.stderr
    assert ANSI not in result.output


def test_plan_json_from_the_environment_as_documented(campaign: Path) -> None:
    result = invoke("plan", str(campaign), env={"LLEM_PLAN_JSON": "1"})
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 3


def test_plan_limit_from_the_environment(campaign: Path) -> None:
    result = invoke("plan", str(campaign), env={"LLEM_PLAN_LIMIT": "1"})
    assert result.exit_code == 0
    assert "2 more (--limit 0 shows all" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("env", "param", "value"),
    [
        ({"LLEM_QUIET": "1"}, "quiet", True),
        ({"LLEM_NO_COLOR": "true"}, "no_color", True),
        ({"LLEM_VERBOSE": "2"}, "verbose", 2),
        ({}, "quiet", False),
    ],
)
def test_global_options_from_the_environment(
    env: dict[str, str], param: str, value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LLEM_QUIET", "LLEM_NO_COLOR", "LLEM_VERBOSE"):
        monkeypatch.delenv(name, raising=False)
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    ctx = cli.make_context("llem", ["schema"])
    assert ctx.params[param] == value


# --- real processes ---------------------------------------------------------------------------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def test_python_dash_m_version() -> None:
    proc = _run(sys.executable, "-m", "llem_cli", "--version")
    assert proc.returncode == 0
    assert proc.stdout == f"llem, version {__version__}\n"


def test_console_script_help() -> None:
    binary = Path(sys.executable).parent / "llem"
    # make venv installs the package (pip install -e), which puts the script there
    assert binary.exists(), f"no llem console script at {binary}: run pip install -e ."
    proc = _run(str(binary), "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: llem ")
    assert "Examples:" in proc.stdout


HEAVY = ("rich", "pydantic", "pynvml", "yaml", "matplotlib", "numpy")
PROBE = """
import sys
from llem_cli.cli import cli
try:
    cli({args!r}, prog_name="llem")
except SystemExit:
    pass
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["--version"],
        ["validate", "--help"],
        ["plan", "--help"],
        ["schema", "--help"],
        ["report", "--help"],
    ],
)
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    proc = _run(sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY))
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr


def test_importing_the_cli_imports_nothing_heavy() -> None:
    proc = _run(sys.executable, "-X", "importtime", "-c", "import llem_cli.cli")
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert "click" in imported
    assert not imported & {"rich", "pydantic", "pynvml", "matplotlib", "numpy"}


def test_validate_needs_no_rich(campaign: Path) -> None:
    """validate prints plain lines: rich stays unimported (pydantic and yaml are needed)."""
    proc = _run(sys.executable, "-c", PROBE.format(args=["validate", str(campaign)], heavy=HEAVY))
    assert "HEAVY=pydantic,yaml\n" in proc.stderr, proc.stderr


# --- llem run FILE --resume [RUN_DIR] ---------------------------------------------------------


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """What ``llem run`` hands to run_campaign (nothing runs)."""
    import llem_cli.commands.run as run_module

    calls: list[dict[str, object]] = []

    def fake(file: Path, **kwargs: object) -> int:
        calls.append({"file": file, **kwargs})
        return 0

    monkeypatch.setattr(run_module, "run_campaign", fake)
    return calls


@pytest.mark.parametrize(
    ("args", "resume", "with_run_dir", "dry_run"),
    [
        (["{c}"], False, False, False),
        (["{c}", "--resume"], True, False, False),
        (["{c}", "--resume", "{r}"], True, True, False),
        (["--resume", "{c}"], True, False, False),  # the order the audit tried
        (["--resume", "{c}", "--dry-run"], True, False, True),
        (["--dry-run", "--resume", "{c}"], True, False, True),
        (["--resume", "{r}", "{c}"], True, True, False),
    ],
)
def test_run_reads_file_and_resume_in_either_order(
    campaign: Path,
    run_calls: list[dict[str, object]],
    args: list[str],
    resume: bool,
    with_run_dir: bool,
    dry_run: bool,
) -> None:
    run_dir = campaign.parent / "results" / "demo" / "20261128T140500Z"
    run_dir.mkdir(parents=True)
    argv = [a.format(c=campaign, r=run_dir) for a in args]
    result = invoke("run", *argv)
    assert result.exit_code == 0, result.output
    (call,) = run_calls
    assert call["file"] == campaign
    assert call["resume"] is resume
    assert call["resume_dir"] == (run_dir if with_run_dir else None)
    assert call["dry_run"] is dry_run


@pytest.mark.parametrize(
    ("args", "message", "usage"),
    [
        ([], "missing the campaign FILE", "llem run FILE"),
        (["--resume"], "missing the campaign FILE", "llem run FILE --resume)"),
        (["--resume", "{d}"], "missing the campaign FILE", "llem run FILE --resume {d})"),
        (["--resume", "{d}/died.yaml"], "{d}/died.yaml: no such", "llem run FILE --resume"),
    ],
)
def test_run_without_file_is_one_usage_line_showing_the_order(
    tmp_path: Path, run_calls: list[dict[str, object]], args: list[str], message: str, usage: str
) -> None:
    result = invoke("run", *(a.format(d=tmp_path) for a in args))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert message.format(d=tmp_path) in lines[0]
    assert f"(usage: {usage.format(d=tmp_path)}" in lines[0]
    assert "Missing argument" not in result.output
    assert not run_calls


def test_run_help_shows_the_resume_order() -> None:
    text = " ".join(invoke("run", "--help").output.split())
    assert "Usage: cli run [OPTIONS] FILE" in text or "Usage: llem run [OPTIONS] FILE" in text
    assert "llem run campaigns/demo.yaml --resume # cron-safe" in text
    assert "FILE comes first" in text


def test_run_resume_then_file_dry_run_in_a_real_process(campaign: Path) -> None:
    """``llem run --resume FILE --dry-run`` prints the plan's docker commands and writes nothing."""
    proc = subprocess.run(
        [sys.executable, "-m", "llem_cli", "run", "--resume", campaign.name, "--dry-run"],
        cwd=campaign.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# dry run: nothing is started or written")
    assert proc.stdout.count("# experiment ") == 3
    assert not (campaign.parent / "results").exists()


# --- llem run's progress lines ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "line"),
    [
        ({"seconds": 2, "why": "gap", "setting": "cycle_gap"}, "waiting 2s (cycle_gap)"),
        ({"seconds": 60, "why": "gap", "setting": "gap"}, "waiting 1m (gap)"),
        ({"seconds": 5, "why": "restart backoff"}, "waiting 5s (restart backoff)"),
    ],
)
def test_a_pause_names_the_setting_that_asked_for_it(event: dict[str, object], line: str) -> None:
    import io

    from llem_cli.runner.reporter import PlainReporter, describe

    event = {"type": "waiting", **event}
    assert describe(event) == line
    stream = io.StringIO()
    PlainReporter(stream).event(event)
    assert stream.getvalue().endswith(f"Z {line}\n")


def _long_flag(option: click.Option) -> str | None:
    longs = [o for o in option.opts if o.startswith("--")]
    return longs[0][2:] if longs else None


def test_every_option_reads_the_documented_environment_variable() -> None:
    # README: every option can come from LLEM_<OPTION> (global) or LLEM_<COMMAND>_<OPTION>,
    # named after the flag. Click's automatic name follows the parameter's *internal* name
    # (--format fmt -> LLEM_RESULTS_FMT), so an option whose name differs needs envvar=.
    checked = []
    groups: list[tuple[str, click.Command]] = [("", cli)]
    groups += [(f"{name.upper()}_", cmd) for name, cmd in cli.commands.items()]
    for prefix, command in groups:
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            flag = _long_flag(param)
            if flag is None:
                continue
            expected = f"LLEM_{prefix}{flag.replace('-', '_').upper()}"
            automatic = f"LLEM_{prefix}{(param.name or '').upper()}"
            actual = param.envvar or automatic
            assert actual == expected, f"--{flag} of {command.name}: {actual} != {expected}"
            checked.append(expected)
    assert "LLEM_RESULTS_FORMAT" in checked and "LLEM_INIT_BACKEND" in checked


def test_results_format_from_the_environment(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    record = {
        "key": "k1-c1", "config_id": "k1", "cycle": 1, "backend": "a", "service": "a",
        "params": {"n": 1}, "status": "ok", "attempts": 1,
    }  # fmt: skip
    event = {"type": "experiment_finished", "ts": "2026-11-28T00:00:00.000Z", "pid": 1}
    lines = [
        {"type": "run_started", "ts": "2026-11-28T00:00:00.000Z", "pid": 1, "campaign": "x"},
        {**event, "key": "k1-c1", "record": record},
    ]
    (run / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    done = CliRunner().invoke(
        cli, ["results", str(run)], env={"LLEM_RESULTS_FORMAT": "csv"}, catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0].startswith("key,config_id,cycle,backend"), done.output
