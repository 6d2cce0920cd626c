"""Four stand-in GPUs that tell apart where an experiment ran, for the sharded (Slurm) tests and
chaos scenarios.

Each GPU idles at :data:`IDLE_W` and draws its own busy power (GPU i: ``(i + 1)`` kW) while an
experiment (``llem-fake-busy`` in the test image) marks it busy, so a record's energy says on
which GPU it was measured. The image's ``nvidia-smi`` lists only the GPUs
``NVIDIA_VISIBLE_DEVICES`` names, as the NVIDIA runtime does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llem_testkit.e2e import E2ECampaign
from llem_testkit.nvml_stub import Stub

COUNT = 4
IDLE_W = 50.0
#: GPU i draws this much more while busy: the energy of a window says which GPU it covered
BUSY_W = {i: 1000.0 * (i + 1) for i in range(COUNT)}


def uuid_of(i: int) -> str:
    """The stand-in's UUID of GPU ``i``."""
    return f"GPU-00000000-0000-0000-0000-{i:012d}"


def write_four_gpus(stub: Stub, busy: Path) -> None:
    """Four GPUs in the stub's state, busy periods read from ``busy``; the power limit lifted
    above the busy powers (the stand-in caps power at the limit in force)."""
    state: dict[str, Any] = {"count": COUNT, "t0": time.time(), "busy_dir": busy}
    for i in range(COUNT):
        state[f"gpu{i}.energy_mj"] = 0
        state[f"gpu{i}.energy_rate_mw"] = int(IDLE_W * 1000)
        state[f"gpu{i}.power_mw"] = int(IDLE_W * 1000)
        state[f"gpu{i}.busy_power_mw"] = int(BUSY_W[i] * 1000)
        state[f"gpu{i}.temp_c"] = 40
        state[f"gpu{i}.power_limit_max_mw"] = 10_000_000
        state[f"gpu{i}.power_limit_mw"] = 10_000_000
    stub.write_state(state)


def busy_campaign(
    c: E2ECampaign,
    stub: Stub,
    *,
    secs: Sequence[float],
    configs: int,
    cycles: int = 1,
    execution: dict[str, Any] | None = None,
    service: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
) -> Path:
    """Write ``c`` as a campaign of ``llem-fake-busy {secs}`` x ``configs`` on the four GPUs
    (``service``: more keys of the compose service); returns its ``busy`` folder (one file per
    GPU UUID of closed busy intervals)."""
    busy = c.root / "busy"
    busy.mkdir(exist_ok=True)
    write_four_gpus(stub, busy)
    c.env.update(LD_LIBRARY_PATH=str(stub.lib_dir), FAKE_NVML_STATE=str(stub.state_file))
    compose_service = {
        "volumes": [f"{stub.state_file.parent}:/llem/fake-nvml:ro", f"{busy}:/busy"],
        "environment": {
            "LLEM_FAKE_NVML_STATE": f"/llem/fake-nvml/{stub.state_file.name}",
            "LLEM_FAKE_BUSY_DIR": "/busy",
        },
        **(service or {}),
    }
    c.write(
        {"bench": {"command": ["llem-fake-busy", "{secs}"]}},
        services={"bench": compose_service},
        grid={"secs": list(secs), "n": list(range(configs))},
        execution={"cycles": cycles, **(execution or {})},
        health={"every": 1, **(health or {})},
    )
    return busy


def busy_intervals(busy: Path) -> dict[str, list[tuple[float, float]]]:
    """Closed busy intervals per GPU UUID, sorted, as ``llem-fake-busy`` wrote them."""
    out: dict[str, list[tuple[float, float]]] = {}
    if not busy.is_dir():
        return out
    for path in busy.iterdir():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.setdefault(path.name, []).append((float(parts[0]), float(parts[1])))
    return {uuid: sorted(spans) for uuid, spans in out.items()}


def overlaps(busy: Path) -> list[str]:
    """Two experiments on one GPU at once, as ``UUID: a-b overlaps c-d`` (empty: none); the
    stamps are two processes' reads of one clock, so 10 ms of overlap are let pass."""
    found = []
    for uuid, spans in sorted(busy_intervals(busy).items()):
        for (a, b), (c, d) in zip(spans, spans[1:], strict=False):
            if c < b - 0.01:
                found.append(f"{uuid}: {a:.2f}-{b:.2f} overlaps {c:.2f}-{d:.2f}")
    return found


__all__ = [
    "BUSY_W",
    "COUNT",
    "IDLE_W",
    "busy_campaign",
    "busy_intervals",
    "overlaps",
    "uuid_of",
    "write_four_gpus",
]
