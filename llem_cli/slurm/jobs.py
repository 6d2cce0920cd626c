"""Submitting the array script and asking Slurm how its tasks are doing.

``sbatch --parsable`` prints ``<job id>[;<cluster>]``. The job ids a run was submitted as are kept
in ``slurm/jobs.json`` (a resubmission appends), and a task journals its own job id, so ``llem
status`` can ask ``squeue`` (jobs Slurm still holds) and then ``sacct`` (finished jobs, where
accounting is on). A Slurm that does not answer is not an error there: status says nothing of it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from llem_cli.atomic import atomic_write_text
from llem_cli.docker.proc import CommandFailed, SubprocessRunner
from llem_cli.errors import EnvironmentProblem

JOBS_FILE = Path("slurm") / "jobs.json"
SUBMIT_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 10.0
_JOB_ID = re.compile(r"\d+")
#: ``123_4`` (a task), ``123_[5-7]`` or ``123_[5,8%2]`` (pending tasks squeue folds)
_TASK_ID = re.compile(r"(\d+)_(\d+|\[[^\]]*\])")


def require_sbatch() -> str:
    """``sbatch``'s path; exit 3 when it is not on PATH (checked before anything is written)."""
    path = shutil.which("sbatch")
    if path is None:
        raise EnvironmentProblem(
            "sbatch not found on PATH: --submit needs Slurm's client commands",
            hint="run llem slurm on a login node of the cluster, or leave out --submit and "
            "submit slurm/llem.sbatch there with sbatch",
        )
    return path


def submit(script: Path, *, runner: SubprocessRunner | None = None) -> str:
    """``sbatch --parsable SCRIPT``; the job id (exit 3 with sbatch's own line when refused)."""
    runner = runner or SubprocessRunner()
    argv = [require_sbatch(), "--parsable", str(script)]
    try:
        result = runner.run(argv, timeout=SUBMIT_TIMEOUT_S)
    except CommandFailed as exc:
        raise EnvironmentProblem(
            f"sbatch refused {script}: {exc.one_line()}",
            hint="fix the options (llem slurm --partition/--time/--sbatch-arg) or the cluster, "
            f"then submit again: sbatch {script}",
        ) from None
    job_id = result.stdout.strip().split(";")[0]
    if not _JOB_ID.fullmatch(job_id):
        raise EnvironmentProblem(
            f"sbatch printed no job id for {script}: {result.stdout.strip()!r}",
            hint="check 'squeue --me' for the job",
        )
    return job_id


def record_job(run_root: Path, job_id: str) -> None:
    """Append a submission's job id to ``slurm/jobs.json``."""
    path = run_root / JOBS_FILE
    jobs = submitted_jobs(run_root)
    if job_id not in jobs:
        jobs.append(job_id)
    atomic_write_text(path, json.dumps({"jobs": jobs}, indent=2) + "\n")


def submitted_jobs(run_root: Path) -> list[str]:
    """The job ids ``--submit`` recorded, oldest first (empty when none or unreadable)."""
    try:
        data = json.loads((run_root / JOBS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return [str(j) for j in jobs if _JOB_ID.fullmatch(str(j))] if isinstance(jobs, list) else []


def task_states(
    job_id: str, shards: int, *, runner: SubprocessRunner | None = None
) -> dict[int, str]:
    """Each array task's state (``PENDING``, ``RUNNING``, ``COMPLETED``...) as Slurm reports it:
    ``squeue`` first (what the controller still holds), ``sacct`` for the rest. Tasks neither
    knows are left out; a missing or silent Slurm gives an empty dict."""
    runner = runner or SubprocessRunner()
    states: dict[int, str] = {}
    squeue = _query(
        runner,
        ["squeue", "--jobs", job_id, "--array", "--states=all", "--noheader", "--format=%i|%T"],
    )
    _parse_into(states, squeue, job_id, shards)
    if len(states) < shards:
        sacct = _query(
            runner,
            [
                "sacct",
                "--jobs",
                job_id,
                "--noheader",
                "--parsable2",
                "--format=JobID,State",  # an array's tasks as <job>_<task>, one per line
            ],
        )
        found: dict[int, str] = {}
        _parse_into(found, sacct, job_id, shards)
        for task, state in found.items():
            states.setdefault(task, state)
    return dict(sorted(states.items()))


def _query(runner: SubprocessRunner, argv: Sequence[str]) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    with contextlib.suppress(CommandFailed, OSError):
        result = runner.run(argv, timeout=QUERY_TIMEOUT_S, check=False)
        if result.ok:
            return result.stdout
    return ""


def _parse_into(states: dict[int, str], text: str, job_id: str, shards: int) -> None:
    """Lines ``<job>_<task>|<STATE>`` (squeue's ``%i|%T``, sacct's ``JobID|State``)."""
    for line in text.splitlines():
        ident, _, state = line.strip().partition("|")
        match = _TASK_ID.fullmatch(ident.strip())
        if match is None or match.group(1) != job_id or not state:
            continue
        word = state.split()[0].upper()  # sacct: "CANCELLED by 0"
        for task in _task_numbers(match.group(2), shards):
            states[task] = word


def _task_numbers(text: str, shards: int) -> list[int]:
    """``4`` -> [4]; ``[0-2,5%4]`` -> [0, 1, 2, 5] (within 0 .. shards-1)."""
    if text.isdigit():
        numbers = [int(text)]
    else:
        numbers = []
        for part in text.strip("[]").split("%")[0].split(","):
            low, _, high = part.partition("-")
            if low.isdigit() and (not high or high.isdigit()):
                numbers.extend(range(int(low), int(high or low) + 1))
    return [n for n in numbers if 0 <= n < shards]


__all__ = [
    "JOBS_FILE",
    "record_job",
    "require_sbatch",
    "submit",
    "submitted_jobs",
    "task_states",
]
