"""Time and peak memory of replaying a journal of N finished experiments.

Usage: python bench/bench_journal.py [N ...]   (default: 10000 100000)

Each record is a realistic one (params, metrics, every measured field set),
and the journal holds started + finished events per experiment plus a probe
every experiment, as a real run writes. Also times the durable append path
(one fsync per event) on a small sample, since that bounds the runner's loop.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from llem_cli.runs.journal import Journal
from llem_cli.runs.record import Record
from llem_cli.runs.state import replay
from llem_cli.timestamps import utc_now_iso


def record(i: int) -> Record:
    return Record(
        key=f"{i:012x}-c1",
        config_id=f"{i:012x}",
        cycle=1,
        backend="pytorch",
        service="pytorch",
        params={"model": "meta-llama/Llama-3.2-1B", "batch_size": 8 * (i % 8 + 1), "seq": 512},
        status="ok",
        attempts=1,
        exit_code=0,
        started_at=utc_now_iso(),
        ended_at=utc_now_iso(),
        duration_s=12.345,
        energy_j=4567.8,
        avg_power_w=370.1,
        idle_power_w=60.2,
        net_energy_j=3800.4,
        max_temp_c=61.0,
        restarts_before=0,
        metrics={"tokens_per_s": 1234.5, "latency_ms_p50": 12.1, "latency_ms_p99": 40.2},
        error=None,
    )


def write(path: Path, n: int) -> None:
    """Write the journal fast (no fsync): the bench measures reading."""
    ts = utc_now_iso()
    with open(path, "w") as f:
        f.write(json.dumps({"type": "run_started", "ts": ts, "pid": 1}) + "\n")
        for i in range(n):
            key = f"{i:012x}-c1"
            f.write(json.dumps({"type": "probe", "ts": ts, "pid": 1, "max_pct": 3.2}) + "\n")
            f.write(json.dumps({"type": "experiment_started", "ts": ts, "pid": 1, "key": key}))
            f.write("\n")
            event = {
                "type": "experiment_finished",
                "ts": ts,
                "pid": 1,
                "record": record(i).to_json(),
            }
            f.write(json.dumps(event, separators=(",", ":")) + "\n")


def bench(n: int, directory: Path) -> None:
    path = directory / f"journal-{n}.jsonl"
    write(path, n)
    size_mb = path.stat().st_size / 1e6
    start = time.perf_counter()
    state = replay(path)
    elapsed = time.perf_counter() - start
    assert len(state.records) == n
    del state
    tracemalloc.start()
    replay(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{n:>7} records  {size_mb:7.1f} MB journal  replay {elapsed:6.3f} s  "
        f"peak {peak / 1e6:6.1f} MB (tracemalloc)"
    )


def bench_append(directory: Path, n: int = 200) -> None:
    with Journal(directory / "append.jsonl") as j:
        start = time.perf_counter()
        for i in range(n):
            j.append("experiment_finished", record=record(i))
        elapsed = time.perf_counter() - start
    print(f"append+fsync: {elapsed / n * 1e3:.2f} ms per event ({n} events)")


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            bench(n, Path(tmp))
        bench_append(Path(tmp))


if __name__ == "__main__":
    main()
