"""Sharding a campaign (``llem slurm``): the cut, the script, a task's view of Slurm, and the
shards read together. The command itself runs through Click; the real Slurm tests are in
tests/slurm and the shards' end-to-end runs in tests/e2e/test_shards_e2e.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.runs.layout import RunDir
from llem_cli.runs.shards import (
    ShardMap,
    config_order,
    merge_states,
    read_shard_map,
    split_configs,
)
from llem_cli.runs.state import RunState
from llem_cli.slurm.jobs import _parse_into, _task_numbers
from llem_cli.slurm.script import SbatchSpec, render_sbatch
from llem_cli.slurm.task import SlurmTask, drop_relative_gpu_variables, job_gpus

# ---- the cut ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configs", "shards", "sizes"),
    [
        (1, 1, [1]),
        (4, 1, [4]),
        (4, 2, [2, 2]),
        (5, 2, [3, 2]),
        (7, 3, [3, 2, 2]),
        (3, 3, [1, 1, 1]),
        (10, 4, [3, 3, 2, 2]),
    ],
)
def test_configurations_are_cut_into_contiguous_blocks_of_near_equal_size(
    configs: int, shards: int, sizes: list[int]
) -> None:
    ids = [f"c{i}" for i in range(configs)]
    cut = split_configs(ids, shards)
    assert [len(block) for block in cut] == sizes
    assert [c for block in cut for c in block] == ids  # in plan order, each once
    assert split_configs(ids, shards) == cut  # deterministic


@pytest.mark.parametrize(("configs", "shards"), [(2, 3), (1, 0), (0, 1)])
def test_an_impossible_cut_is_refused(configs: int, shards: int) -> None:
    with pytest.raises(ValueError):
        split_configs([f"c{i}" for i in range(configs)], shards)


def test_config_order_keeps_the_first_appearance_of_each_configuration() -> None:
    assert config_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_the_shard_map_round_trips_and_names_each_shards_project(tmp_path: Path) -> None:
    cut = ShardMap((("a", "b"), ("c",)), "llem-x")
    data = json.loads(json.dumps(cut.to_json()))
    assert ShardMap.from_json(data) == cut
    assert cut.shard_of("c") == 1 and cut.shard_of("zz") is None
    assert [cut.project_of(k) for k in range(cut.count)] == ["llem-x-s0", "llem-x-s1"]
    for bad in ({}, {"format": 2}, {"format": 1, "project": "p", "shards": [{"shard": 1}]}):
        with pytest.raises(ValueError):
            ShardMap.from_json(bad)


def test_a_shards_files_are_its_own_and_its_experiments_the_runs(tmp_path: Path) -> None:
    run, shard = RunDir(tmp_path), RunDir(tmp_path, 3)
    assert shard.journal == tmp_path / "shards" / "s3" / "journal.jsonl"
    assert shard.plan == tmp_path / "shards" / "s3" / "plan.json"
    assert shard.results_csv == tmp_path / "shards" / "s3" / "results.csv"
    assert shard.experiments == run.experiments and shard.campaign == run.campaign
    assert shard.run_id == run.run_id == tmp_path.name


def _state(**fields: Any) -> RunState:
    state = RunState()
    for name, value in fields.items():
        setattr(state, name, value)
    return state


def test_shard_states_fold_into_one_run_state() -> None:
    a = _state(
        started=True,
        finished=True,
        restarts=1,
        sessions=1,
        in_flight=set(),
        last_event={"type": "run_finished", "ts": "2026-11-30T10:00:00.000Z"},
        writer_pid=11,
    )
    b = _state(
        started=True,
        interrupted=True,
        restarts=2,
        sessions=2,
        in_flight={"k-c1"},
        last_event={"type": "interrupted", "ts": "2026-11-30T11:00:00.000Z"},
        writer_pid=22,
    )
    merged = merge_states([a, b])
    assert merged.restarts == 3 and merged.sessions == 3
    assert merged.in_flight == {"k-c1"}
    assert not merged.finished and merged.interrupted and merged.started
    assert merged.writer_pid == 22 and merged.last_event == b.last_event
    assert merge_states([a, a]).finished
    assert not merge_states([]).finished


# ---- the script -------------------------------------------------------------------------------


def spec(**changes: Any) -> SbatchSpec:
    base: dict[str, Any] = {
        "job_name": "llem-demo",
        "shards": 3,
        "gpus_per_shard": 2,
        "run_dir": Path("/shared/results/demo/20261130T100000Z"),
        "campaign_file": Path("/shared/camp aign.yaml"),
        "llem_argv": ("/opt/venv/bin/python", "-m", "llem_cli"),
    }
    return SbatchSpec(**{**base, **changes})


def test_the_script_is_an_array_with_one_task_per_shard_each_resuming_its_shard() -> None:
    text = render_sbatch(
        spec(partition="gpu", time="08:00:00", extra=("--mem=64G", "--account=p42"))
    )
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for option in (
        "--array=0-2",
        "--gres=gpu:2",
        "--requeue",
        "--open-mode=append",
        "--partition=gpu",
        "--time=08:00:00",
        "--mem=64G",
        "--account=p42",
        "--job-name=llem-demo",
        "--output=/shared/results/demo/20261130T100000Z/slurm/task-%a.out",
    ):
        assert f"#SBATCH {option}" in lines, option
    (command,) = [line for line in lines if line.startswith("exec ")]
    assert command == (
        "exec /opt/venv/bin/python -m llem_cli run '/shared/camp aign.yaml' --resume "
        '/shared/results/demo/20261130T100000Z --shard "${SLURM_ARRAY_TASK_ID}" --no-progress'
    )
    # every #SBATCH line comes before the first command (sbatch stops reading them there)
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in lines[first_command:])
    assert render_sbatch(spec()) == render_sbatch(spec())


def test_no_gpu_request_without_gpus_per_shard() -> None:
    assert "--gres" not in render_sbatch(spec(gpus_per_shard=0))


# ---- a task's view of Slurm -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "gpus"),
    [
        ({}, None),
        ({"SLURM_JOB_GPUS": "2"}, ("2",)),
        ({"SLURM_JOB_GPUS": "0,3"}, ("0", "3")),
        ({"SLURM_JOB_GPUS": "0,3", "SLURM_STEP_GPUS": "3"}, ("3",)),
        ({"SLURM_JOB_GPUS": " ", "CUDA_VISIBLE_DEVICES": "0"}, None),
    ],
)
def test_the_gpus_are_the_nodes_indexes_slurm_gave(
    env: dict[str, str], gpus: tuple[str, ...] | None
) -> None:
    assert job_gpus(env) == gpus


def test_a_task_reads_its_job_and_restarts_from_the_environment() -> None:
    task = SlurmTask.from_env(
        {
            "SLURM_JOB_ID": "101",
            "SLURM_ARRAY_JOB_ID": "100",
            "SLURM_ARRAY_TASK_ID": "1",
            "SLURM_RESTART_COUNT": "2",
            "SLURMD_NODENAME": "gpu07",
            "SLURM_JOB_GPUS": "1",
        }
    )
    assert task.journal_fields() == {
        "job_id": "100",
        "array_task": 1,
        "node": "gpu07",
        "restart_count": 2,
        "gpus": ["1"],
    }
    outside = SlurmTask.from_env({})
    assert not outside.in_slurm and outside.gpus is None and outside.array_task is None


def test_job_relative_gpu_numbers_are_dropped_so_docker_never_sees_them() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "0", "ROCR_VISIBLE_DEVICES": "0", "PATH": "/bin"}
    assert drop_relative_gpu_variables(env) == ["CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"]
    assert env == {"PATH": "/bin"}


@pytest.mark.parametrize(
    ("text", "states"),
    [
        ("77_0|RUNNING\n77_1|PENDING\n", {0: "RUNNING", 1: "PENDING"}),
        ("77_[1-3%2]|PENDING\n77_0|RUNNING\n", {0: "RUNNING", 1: "PENDING", 2: "PENDING"}),
        ("77_0|COMPLETED\n77_0.batch|COMPLETED\n78_1|FAILED\n", {0: "COMPLETED"}),
        ("77_1|CANCELLED by 0\n", {1: "CANCELLED"}),
        ("garbage\n|\n", {}),
    ],
)
def test_squeue_and_sacct_lines_give_each_tasks_state(text: str, states: dict[int, str]) -> None:
    found: dict[int, str] = {}
    _parse_into(found, text, "77", 3)
    assert found == states


def test_folded_task_ranges_stay_within_the_array() -> None:
    assert _task_numbers("[0-2,5]", 4) == [0, 1, 2]
    assert _task_numbers("3", 4) == [3]


# ---- the command ------------------------------------------------------------------------------


def write_campaign(tmp_path: Path, configs: int = 3, **extra: Any) -> Path:
    (tmp_path / "compose.yml").write_text("services:\n  bench:\n    image: busybox\n")
    backend: dict[str, Any] = {"command": ["true", "{n}"], **extra.pop("backend", {})}
    doc = {
        "name": "sharded",
        "compose": "compose.yml",
        "backends": {"bench": backend},
        "grid": {"n": list(range(configs))},
        "execution": {"cycles": 2, **extra.pop("execution", {})},
        **extra,
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(json.dumps(doc))
    return path


def llem(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def test_llem_slurm_writes_the_run_directory_and_prints_the_scripts_path(tmp_path: Path) -> None:
    file = write_campaign(tmp_path, configs=3)
    done = llem("slurm", file, "--shards", "2", "--gpus-per-shard", "1")
    assert done.exit_code == 0, done.output
    script = Path(done.stdout.strip())
    root = script.parent.parent
    assert script == root / "slurm" / "llem.sbatch"
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert "#SBATCH --array=0-1" in text and "#SBATCH --gres=gpu:1" in text
    assert f"exec {sys.executable} -m llem_cli run {file.resolve()} --resume {root}" in text
    cut = read_shard_map(root)
    assert cut.count == 2 and [len(b) for b in cut.shards] == [2, 1]
    assert cut.project == "llem-sharded"
    plan = json.loads((root / "plan.json").read_text())
    assert len(plan) == 6  # the whole plan: 3 configurations x 2 cycles
    assert (root / "campaign.yaml").read_text() == file.read_text()
    assert "sbatch " + str(script) in done.stderr  # how to submit it
    # status reads it before any task started: nothing done, every shard not started
    status = llem("status", root, "--json")
    info = json.loads(status.stdout)
    assert info["total"] == 6 and info["pending"] == 6
    assert [s["state"] for s in info["shards"]] == ["not_started", "not_started"]
    results = llem("results", root, "--format", "json")
    assert results.exit_code == 0, results.output


def test_the_dry_run_prints_the_shards_and_script_and_writes_nothing(tmp_path: Path) -> None:
    file = write_campaign(tmp_path, configs=3)
    done = llem("slurm", file, "--shards", "3", "--dry-run", "--submit")
    assert done.exit_code == 0, done.output
    assert "#SBATCH --array=0-2" in done.stdout
    assert done.stdout.count("# shard ") == 3
    assert "# then: sbatch --parsable" in done.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("args", "extra", "code", "message"),
    [
        (["--shards", "4"], {}, 2, "--shards 4: the campaign has 3 configuration(s)"),
        (["--shards", "0"], {}, 2, "--shards"),
        (
            ["--shards", "1"],
            {"backend": {"gpus": [0, 1]}},
            2,
            "backends.bench.gpus: [0, 1] pins host GPUs",
        ),
        (
            ["--shards", "1", "--gpus-per-shard", "1"],
            {"backend": {"gpus": 2}},
            2,
            "backends.bench.gpus: 2 GPUs per experiment, but a shard gets 1",
        ),
        (
            ["--shards", "1", "--gpus-per-shard", "2"],
            {"execution": {"lanes": 4}},
            2,
            "execution.lanes: 4 lanes of 1 GPU(s) need 4 GPUs, but a shard gets 2",
        ),
        (["--shards", "1", "--sbatch-arg", "mem=4G"], {}, 2, "not an sbatch option"),
        (["--shards", "1", "--partition", "a b"], {}, 2, "expected one word"),
    ],
)
def test_bad_slurm_options_are_one_line_and_write_nothing(
    tmp_path: Path, args: list[str], extra: dict[str, Any], code: int, message: str
) -> None:
    file = write_campaign(tmp_path, configs=3, **extra)
    done = llem("slurm", file, *args)
    assert done.exit_code == code, done.output
    assert message in done.output
    assert not (tmp_path / "results").exists()


def test_submit_without_sbatch_is_exit_3_before_anything_is_written(tmp_path: Path) -> None:
    file = write_campaign(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    done = llem("slurm", file, "--shards", "2", "--submit", env={"PATH": str(empty)})
    assert done.exit_code == 3, done.output
    assert "sbatch not found on PATH" in done.output
    assert not (tmp_path / "results").exists()


def test_a_shard_needs_its_run_directory_and_exists_in_it(tmp_path: Path) -> None:
    file = write_campaign(tmp_path, configs=2)
    no_dir = llem("run", file, "--shard", "0")
    assert no_dir.exit_code == 2 and "--resume RUN_DIR" in no_dir.output
    made = llem("slurm", file, "--shards", "2")
    root = Path(made.stdout.strip()).parent.parent
    beyond = llem("run", file, "--resume", root, "--shard", "2")
    assert beyond.exit_code == 2 and "the run has 2 shard(s), 0 to 1" in beyond.output
    plain = tmp_path / "plain"
    plain.mkdir()
    not_sharded = llem("run", file, "--resume", plain, "--shard", "0")
    assert not_sharded.exit_code == 2 and "not a run made by 'llem slurm'" in not_sharded.output
    other = tmp_path / "other"
    other.mkdir()
    changed = write_campaign(other, configs=1)  # the same name, one configuration left
    gone = llem("run", changed, "--resume", root, "--shard", "1")
    assert gone.exit_code == 2 and "the campaign file changed since llem slurm" in gone.output


def test_an_unseen_run_directory_is_exit_3_naming_the_node(tmp_path: Path) -> None:
    file = write_campaign(tmp_path)
    missing = tmp_path / "not-mounted" / "20261130T000000Z"
    done = llem("run", file, "--resume", missing, "--shard", "0", env={"SLURMD_NODENAME": "gpu09"})
    assert done.exit_code == 3, done.output
    assert f"run directory {missing} is not visible on node gpu09" in done.output


def test_the_script_runs_its_shard_with_secrets_from_the_env_file(tmp_path: Path) -> None:
    # the script itself, run by bash: llem replaced by a Python that prints what it got
    show = "import os, sys; print(os.environ.get('HF_TOKEN')); print(sys.argv[1:])"
    script = tmp_path / "llem.sbatch"
    script.write_text(render_sbatch(spec(llem_argv=(sys.executable, "-c", show))))
    secrets = tmp_path / "hf.env"
    secrets.write_text("HF_TOKEN=hf_from_the_file\n")
    env = {"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_JOB_ID": "9"}
    done = subprocess.run(
        ["bash", str(script)],
        env={**env, "LLEM_ENV_FILE": str(secrets)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("llem: shard 1 of job 9 on ")
    assert lines[1] == "hf_from_the_file"
    assert lines[2] == str(
        [
            "run",
            "/shared/camp aign.yaml",
            "--resume",
            "/shared/results/demo/20261130T100000Z",
            "--shard",
            "1",
            "--no-progress",
        ]
    )
    assert "hf_from_the_file" not in script.read_text()
    # without the file: no token; a file that cannot be read stops the task (exit 3)
    plain = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert plain.returncode == 0 and plain.stdout.splitlines()[1] == "None"
    missing = subprocess.run(
        ["bash", str(script)],
        env={**env, "LLEM_ENV_FILE": str(tmp_path / "nope.env")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 3
