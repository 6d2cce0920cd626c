"""What an experiment sees inside its container: the container contract (docs/design.md §3.5).

Separate from :mod:`llem_cli.docker.manager` because it is data, not docker: the ``LLEM_*``
environment of one experiment exec and the container paths under the run directory's mount.
The runner and ``--dry-run`` build the exec from these without a :class:`ContainerManager`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llem_cli.docker.override import RUN_MOUNT


def experiment_env(
    *,
    run_id: str,
    key: str,
    cycle: int,
    params: Mapping[str, Any],
    experiment_dir: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of the container contract (docs/design.md §3.5) for one experiment exec.

    ``extra`` (the backend's ``env``) comes first, so llem's own variables win.
    """
    env = dict(extra or {})
    env.update(
        {
            "LLEM_RUN_ID": run_id,
            "LLEM_EXPERIMENT_KEY": key,
            "LLEM_CYCLE": str(cycle),
            "LLEM_PARAMS": json.dumps(dict(params), sort_keys=True),
            "LLEM_EXPERIMENT_DIR": experiment_dir,
        }
    )
    return env


def container_experiment_dir(key: str) -> str:
    """The container path of ``<run_dir>/experiments/<key>`` (the run dir is at /llem/run)."""
    return f"{RUN_MOUNT}/experiments/{key}"


__all__ = ["container_experiment_dir", "experiment_env"]
