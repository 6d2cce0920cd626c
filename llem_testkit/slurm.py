"""Whether Slurm tests can run here, the ``slurm`` marker rule, and a real Slurm driven by its CLI.

Tests marked ``slurm`` skip only when no usable Slurm is here and ``LLEM_REQUIRE_SLURM`` is
unset; with it set (``.ci/run`` sets it) they fail, naming the reason (:func:`require_slurm`).
``scripts/slurm.sh`` starts a one-node cluster: this host, ``nproc`` CPUs, ``gpu:4`` on stand-in
character devices, ``KillWait=10``, ``MinJobAge=300`` (finished jobs stay visible 5 minutes).

The helpers run the real commands (``sbatch``, ``squeue``, ``scontrol``, ``scancel``), each an
argv list with a timeout. Job states are Slurm's long names (``PENDING``, ``RUNNING``,
``COMPLETING``, ``COMPLETED``, ``CANCELLED``, ...), keyed by array task id (``"0"``, ``"1"``),
or by the job id for a job that is no array.

What the cluster does, measured on it (Slurm 22.05, Debian 12):

* ``SLURM_JOB_GPUS`` and ``CUDA_VISIBLE_DEVICES`` list the GPUs as indexes into the node's gres
  list (``"0"``, ``"1,2"``, ``"0,1,2,3"``), not device minors; ``SLURM_STEP_GPUS`` is not set in
  a batch script (only in ``srun`` steps);
* ``scancel`` sends SIGCONT then SIGTERM to every process of the job at once (the ``exec``-ed
  command and its background children alike), SIGKILL ``KillWait`` (10 s) later; ``scancel
  --signal=SIG`` alone signals no process of a batch job without steps (``--batch``: the batch
  script's own process, ``--full``: all of its processes);
* ``scontrol requeue`` sets the task's begin time ~120 s ahead: :func:`requeue` moves it back to
  now, so the task runs again within a second or so (``SLURM_RESTART_COUNT=1``, unset on the
  first run).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "END_STATES",
    "SlurmError",
    "cancel",
    "job_states",
    "require_slurm",
    "requeue",
    "skip_unless_slurm_possible",
    "slurm_config",
    "slurm_problem",
    "slurm_required",
    "submit",
    "wait_for",
    "wait_running",
]

#: states a job (or array task) does not leave by itself (squeue/scontrol long names)
END_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
#: node states in which the node takes jobs (``sinfo -o %T``; a ``*`` suffix: not responding)
_USABLE_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing"})
#: seconds any one Slurm command may take (the controller answers in milliseconds when up)
COMMAND_TIMEOUT_S = 20.0
#: the commands the helpers run
_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


class SlurmError(RuntimeError):
    """A Slurm command failed (its argv, exit status and last line of stderr in the message)."""


def _run(
    argv: Sequence[str],
    *,
    timeout_s: float = COMMAND_TIMEOUT_S,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv`` (no shell), return its stdout; :class:`SlurmError` on a non-zero exit."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=cwd,
            env=None if env is None else dict(env),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise SlurmError(f"{' '.join(argv)}: exit {done.returncode}: {last}")
    return done.stdout


# ---- the marker rule ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def slurm_problem() -> str | None:
    """Why slurm tests cannot run here (``None``: a controller answers and a node with
    ``gpu`` gres takes jobs)."""
    missing = [cmd for cmd in _COMMANDS if shutil.which(cmd) is None]
    if missing:
        return f"no Slurm client here ({', '.join(missing)} not on PATH): run scripts/slurm.sh"
    try:
        out = _run(["sinfo", "--noheader", "--Node", "--format=%N|%T|%G"], timeout_s=15)
    except SlurmError as exc:
        return f"no Slurm controller answering ({exc}): run scripts/slurm.sh"
    nodes = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    if not nodes:
        return "Slurm answers but lists no node: run scripts/slurm.sh"
    for _name, state, gres in nodes:
        if state in _USABLE_NODE_STATES and re.search(r"(^|,)gpu[:(]", gres):
            return None
    seen = ", ".join(f"{name} {state} gres {gres}" for name, state, gres in nodes)
    return f"no Slurm node takes jobs with gpu gres ({seen}): run scripts/slurm.sh"


def slurm_required() -> bool:
    """True when slurm tests must run (CI): ``LLEM_REQUIRE_SLURM`` set and not empty/0."""
    return os.environ.get("LLEM_REQUIRE_SLURM", "") not in ("", "0")


def skip_unless_slurm_possible(reason: str) -> NoReturn:
    """Skip a Slurm test this host cannot stage, but fail it where tests must run (CI).

    With ``LLEM_REQUIRE_SLURM`` set nothing may be silently dropped, so what would be a skip
    elsewhere is a failure there, naming the reason.
    """
    if slurm_required():
        pytest.fail(f"LLEM_REQUIRE_SLURM is set but {reason}")
    pytest.skip(reason)


def require_slurm() -> None:
    """The rule for a test marked ``slurm``, applied before it runs.

    No usable Slurm: skip, or fail where ``LLEM_REQUIRE_SLURM`` is set.
    """
    problem = slurm_problem()
    if problem is not None:
        skip_unless_slurm_possible(problem)


def slurm_config() -> dict[str, str]:
    """The controller's running configuration (``scontrol show config``), as ``{"KillWait":
    "10 sec", "MinJobAge": "300 sec", ...}``."""
    out = _run(["scontrol", "show", "config"])
    config: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            config[key.strip()] = value.strip()
    return config


# ---- jobs --------------------------------------------------------------------------------------


def submit(
    script: str | os.PathLike[str],
    *,
    options: Sequence[str] = (),
    args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> str:
    """Submit the batch script ``script`` (``sbatch --parsable OPTIONS SCRIPT ARGS``), return
    the job id (of an array: the array's id, as in ``12_0``).

    ``options`` are sbatch's (``--array=0-1``, ``--gres=gpu:1``, ``--output=...``); the job
    runs in ``cwd`` (sbatch's default: the submitter's working directory) with the submitter's
    environment (``--export=ALL``), ``env`` when given.
    """
    path = Path(script)
    if not path.is_file():
        raise SlurmError(f"no batch script {path}")
    argv = ["sbatch", "--parsable", *options, str(path), *args]
    out = _run(argv, timeout_s=timeout_s, cwd=cwd, env=env)
    # "ID" or "ID;CLUSTER"
    job_id = out.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"{' '.join(argv)}: no job id in {out!r}")
    return job_id


def _task_key(job_id: str, array_task: str) -> str:
    """The key of a job record: its array task id, or the job id for a job that is no array."""
    return job_id if array_task in ("", "N/A", "(null)") else array_task


def _expand_tasks(spec: str) -> list[str]:
    """Array task ids from a range as scontrol prints it (``0-3``, ``1,4-5``, ``0-9:2%4``)."""
    spec = spec.split("%", 1)[0]
    tasks: list[str] = []
    for part in spec.split(","):
        rng, _, step = part.partition(":")
        first, _, last = rng.partition("-")
        if not first.isdigit():
            continue
        stop = int(last) if last.isdigit() else int(first)
        tasks.extend(str(i) for i in range(int(first), stop + 1, int(step) if step else 1))
    return tasks


def _states_squeue(job_id: str, timeout_s: float) -> dict[str, str]:
    out = _run(
        [
            "squeue",
            f"--jobs={job_id}",
            "--array",
            "--states=all",
            "--noheader",
            "--format=%i|%K|%T",
        ],
        timeout_s=timeout_s,
    )
    states: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        ident, task, state = parts
        base = ident.split("_", 1)[0]
        for one in _expand_tasks(task) if task not in ("N/A", "") else [""]:
            states[_task_key(base, one)] = state
    return states


def _states_scontrol(job_id: str, timeout_s: float) -> dict[str, str]:
    out = _run(["scontrol", "--oneliner", "show", "job", job_id], timeout_s=timeout_s)
    states: dict[str, str] = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobState" not in fields:
            continue
        task = fields.get("ArrayTaskId", "")
        base = fields.get("ArrayJobId") or fields.get("JobId", job_id)
        for one in _expand_tasks(task) if task else [""]:
            states[_task_key(base, one)] = fields["JobState"]
    return states


def job_states(job_id: str, *, timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, str]:
    """The state of each task of ``job_id`` (``"12"``, or one task: ``"12_1"``), keyed by array
    task id (``{"0": "RUNNING", "1": "PENDING"}``), or by the job id for a job that is no array
    (``{"12": "COMPLETED"}``); ``{}`` once Slurm has forgotten the job (``MinJobAge``).

    ``squeue --states=all --array`` first (pending array ranges split per task); ``scontrol show
    job`` where squeue fails or lists nothing.
    """
    try:
        states = _states_squeue(job_id, timeout_s)
    except SlurmError:
        states = {}
    if states:
        return states
    try:
        return _states_scontrol(job_id, timeout_s)
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return {}
        raise


def _all_ended(states: Mapping[str, str]) -> bool:
    return bool(states) and all(state in END_STATES for state in states.values())


def wait_for(
    job_id: str,
    predicate: Callable[[dict[str, str]], bool] | None = None,
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.2,
) -> dict[str, str]:
    """Poll :func:`job_states` until ``predicate(states)`` holds (default: every task in one of
    :data:`END_STATES`); return those states. :class:`TimeoutError` naming the last states."""
    done = predicate if predicate is not None else _all_ended
    deadline = time.monotonic() + timeout_s
    while True:
        states = job_states(job_id)
        if done(states):
            return states
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id}: still {states or 'unknown'} after {timeout_s:g}s")
        time.sleep(poll_s)


def wait_running(
    job_id: str, task: int | str | None = None, *, timeout_s: float = 60.0
) -> dict[str, str]:
    """Wait until array task ``task`` of ``job_id`` (or the job itself: ``task`` None) runs."""
    key = str(job_id if task is None else task)

    def running(states: dict[str, str]) -> bool:
        state = states.get(key)
        if state in END_STATES:
            raise SlurmError(f"job {job_id} task {key} ended {state} before running")
        return state == "RUNNING"

    return wait_for(job_id, running, timeout_s=timeout_s)


def cancel(
    job_id: str,
    *,
    signal: str | None = None,
    full: bool = False,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> None:
    """``scancel`` the job or an array task (``"12_1"``), or with ``signal`` only signal it.

    Cancelling sends SIGCONT and SIGTERM to every process of the job at once, SIGKILL
    ``KillWait`` later. A ``signal`` (``"USR1"``) goes to the batch script's own process only
    (``scancel --batch``: the ``exec``-ed command, not its children), or with ``full`` to every
    process of the batch script (``scancel --full``). (A bare ``scancel --signal`` reaches no
    process of a batch job that has no ``srun`` steps.)
    """
    argv = ["scancel"]
    if signal is not None:
        argv += [f"--signal={signal}", "--full" if full else "--batch"]
    _run([*argv, job_id], timeout_s=timeout_s)


def _pending_reason(job_task: str, timeout_s: float) -> tuple[str, str, int, str]:
    """(JobState, Reason, Restarts, JobId) of one job record as ``scontrol show job`` prints
    them (an array task's JobId is its own number, not the array's)."""
    out = _run(["scontrol", "--oneliner", "show", "job", job_task], timeout_s=timeout_s)
    fields = dict(re.findall(r"(\w+)=(\S*)", out.splitlines()[0] if out else ""))
    restarts = fields.get("Restarts", "0")
    return (
        fields.get("JobState", ""),
        fields.get("Reason", ""),
        int(restarts) if restarts.isdigit() else 0,
        fields.get("JobId", ""),
    )


def _stepd_alive(job_id: str) -> bool:
    """Whether this node still runs a ``slurmstepd`` of the job (``slurmstepd: [164.batch]``).

    The test cluster is this one node, so /proc shows every step daemon of it."""
    mark = f"slurmstepd: [{job_id}.".encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "cmdline").read_bytes().startswith(mark):
                    return True
            except OSError:
                continue
    return False


def requeue(job_task: str, *, timeout_s: float = 60.0, attempts: int = 5) -> int:
    """``scontrol requeue`` a running or ended job or array task (``"12_1"``), made to start
    again now; returns how many extra requeues that took.

    Slurm gives a requeued job a begin time ~120 s ahead, and resets it when the job's old
    processes are gone (SIGTERM, up to ``KillWait`` later SIGKILL): once the job is back to
    PENDING and the old run's ``slurmstepd`` has left this node, its begin time is moved to now
    (``scontrol update jobid=... starttime=now``). slurmd may still refuse the launch ("Job N
    already killed, do not launch batch job": it remembers recently killed job ids, the reason
    for Slurm's 120 s): the task then ends FAILED at once and is requeued again, up to
    ``attempts`` times. Returns when the task runs again (or waits for resources).
    """
    for attempt in range(attempts):
        if _requeue_once(job_task, timeout_s):
            return attempt
    raise SlurmError(f"job {job_task}: not running again after {attempts} requeues")


def _requeue_once(job_task: str, timeout_s: float) -> bool:
    """One requeue (see :func:`requeue`); False when the requeued task failed to launch."""
    before = _pending_reason(job_task, COMMAND_TIMEOUT_S)[2]
    _run(["scontrol", "requeue", job_task], timeout_s=COMMAND_TIMEOUT_S)
    deadline = time.monotonic() + timeout_s
    while True:
        state, reason, restarts, job_id = _pending_reason(job_task, COMMAND_TIMEOUT_S)
        # until Restarts counts the requeue, what scontrol shows is the old run (still RUNNING,
        # or ended); then COMPLETING while its processes are killed, PENDING with the old run's
        # reason (JobLaunchFailure after a killed batch process, None), then BeginTime
        if restarts <= before:
            pass
        elif state == "PENDING" and reason == "BeginTime" and not _stepd_alive(job_id):
            _run(
                ["scontrol", "update", f"jobid={job_task}", "starttime=now"],
                timeout_s=COMMAND_TIMEOUT_S,
            )
        elif state in ("RUNNING", "CONFIGURING") or (
            state == "PENDING" and reason in ("Resources", "Priority")
        ):
            return True
        elif state in END_STATES:
            return False  # the launch was refused: requeue it again
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"job {job_task}: {state} ({reason}) {timeout_s:g}s after scontrol requeue"
            )
        time.sleep(0.2)
