"""What a Slurm array task knows of itself, from the environment slurmd gives its batch script.

The GPUs: ``SLURM_STEP_GPUS`` (inside a step) or ``SLURM_JOB_GPUS`` (the batch script) are the
node's own GPU indexes, the ones host NVML numbers. ``CUDA_VISIBLE_DEVICES`` is not: under
device cgroups it is renumbered from 0, and the Docker daemon, outside the job's cgroup, sees the
whole node. So llem maps the indexes to UUIDs through host NVML (``--gpus``, lanes over them),
pins the containers by UUID, and drops ``CUDA_VISIBLE_DEVICES`` from its own environment so no
``docker compose`` it runs can pass it on.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

#: variables that number GPUs relative to the job; meaningless (wrong) to the Docker daemon
RELATIVE_GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")


@dataclass(frozen=True)
class SlurmTask:
    """The Slurm job this process runs in (all None outside Slurm)."""

    job_id: str | None
    array_task: int | None
    node: str
    restart_count: int
    gpus: tuple[str, ...] | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlurmTask:
        """Read the task from ``env`` (default: this process's environment)."""
        env = os.environ if env is None else env
        job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID") or None
        task = env.get("SLURM_ARRAY_TASK_ID", "")
        restarts = env.get("SLURM_RESTART_COUNT", "")
        return cls(
            job_id=job,
            array_task=int(task) if task.isdigit() else None,
            node=env.get("SLURMD_NODENAME") or socket.gethostname(),
            restart_count=int(restarts) if restarts.isdigit() else 0,
            gpus=job_gpus(env),
        )

    @property
    def in_slurm(self) -> bool:
        """Whether a Slurm job id is set at all."""
        return self.job_id is not None

    def journal_fields(self) -> dict[str, Any]:
        """The ``slurm`` object of the shard's ``run_started`` event."""
        return {
            "job_id": self.job_id,
            "array_task": self.array_task,
            "node": self.node,
            "restart_count": self.restart_count,
            "gpus": list(self.gpus) if self.gpus is not None else None,
        }


def job_gpus(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """The node's GPU indexes Slurm gave this task (None: Slurm gave no GPU list).

    ``SLURM_STEP_GPUS`` wins inside a step (``srun``); the batch script has ``SLURM_JOB_GPUS``.
    Both are comma-separated node indexes (``0,2``).
    """
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = env.get(name, "").strip()
        if value:
            return tuple(part.strip() for part in value.split(",") if part.strip())
    return None


def drop_relative_gpu_variables(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove :data:`RELATIVE_GPU_VARIABLES` from ``env`` (default: this process's) so that no
    subprocess inherits them; return the names removed."""
    target = os.environ if env is None else env
    removed = [name for name in RELATIVE_GPU_VARIABLES if name in target]
    for name in removed:
        del target[name]
    return removed


__all__ = ["RELATIVE_GPU_VARIABLES", "SlurmTask", "drop_relative_gpu_variables", "job_gpus"]
