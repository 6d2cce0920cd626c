"""Small finished run directories with known records, for tests of what reads runs.

:func:`sample_run` writes one through :class:`~llem_cli.runs.journal.Journal`, as a run would:
``configs`` configurations (backend ``demo``, parameter ``size``), ``cycles`` ok experiments
each, energy growing with size, output tokens and throughput reported, ``simulated`` in every
record's ``measurement``.
"""

from __future__ import annotations

import json
from pathlib import Path

from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import Record

SIZES = (256, 512, 1024, 2048, 4096, 8192)


def sample_run(
    results: Path, *, configs: int = 4, cycles: int = 3, simulated: bool = False
) -> Path:
    """Write a finished run of campaign ``sample`` under ``results``; its directory."""
    run = create_run_dir(results, "sample")
    (run.root / "campaign.yaml").write_text("name: sample\n")
    keys: list[str] = []
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        if simulated:
            journal.append(
                "telemetry", gpus=[0], simulated=True, note="SIMULATED GPU: measuring host GPUs [0]"
            )
        for i, size in enumerate(SIZES[:configs]):
            config_id = f"cfg{i:03d}"
            for cycle in range(1, cycles + 1):
                key = f"{config_id}-c{cycle}"
                keys.append(key)
                seconds = 0.5 + size / 1024 + 0.05 * cycle
                energy = 60.0 * seconds + 0.2 * size + cycle
                record = Record(
                    key=key,
                    config_id=config_id,
                    cycle=cycle,
                    backend="demo",
                    service="demo",
                    params={"size": size},
                    status="ok",
                    energy_j=round(energy, 3),
                    avg_power_w=round(energy / seconds, 3),
                    duration_s=round(seconds, 3),
                    metrics={
                        "output_tokens": size,
                        "output_tokens_per_s": round(size / seconds, 3),
                    },
                    measurement={"method": "counter", "gpus": [0], "simulated": simulated},
                )
                journal.append("experiment_finished", key=key, record=record)
        journal.append("run_finished", run_id=run.run_id, counts={"ok": len(keys)})
    (run.root / "plan.json").write_text(json.dumps([{"key": k} for k in keys]))
    return run.root
