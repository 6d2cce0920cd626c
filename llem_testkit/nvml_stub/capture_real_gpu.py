"""Run llem's telemetry once against a real GPU and write what it saw as a JSON fixture.

For a machine with a real NVIDIA driver (not the stub): the issue asks to keep one real
run as a reference for the stub's answers. Usage::

    .venv/bin/python -m llem_testkit.nvml_stub.capture_real_gpu nvml_real_h200.json

It records the doctor report, the capabilities, an idle baseline (2 s), one 1 s window,
one 20 ms window (expected: ``short_window``) and one thermal poll. It needs no CUDA and
puts no load on the GPU.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from llem_cli.telemetry import EnergyMonitor, describe_gpus, wait_until_cool


def capture() -> dict[str, object]:
    """Everything the fixture holds, as plain data."""
    report = describe_gpus()
    out: dict[str, object] = {"doctor": report.to_dict(), "doctor_lines": report.lines()}
    with EnergyMonitor() as mon:
        out["capabilities"] = {str(k): v for k, v in mon.capabilities().items()}
        idle = mon.measure_idle(2.0)
        out["idle_power_w"] = {str(k): v for k, v in idle.power_w.items()}
        mon.begin_window("one_second")
        time.sleep(1.0)
        out["window_1s"] = mon.end_window("one_second").to_dict()
        mon.begin_window("twenty_ms")
        time.sleep(0.02)
        out["window_20ms"] = mon.end_window("twenty_ms").to_dict()
        wait = wait_until_cool(mon.gpu_set, max_temp_c=200, max_wait_s=1)
        out["thermal"] = asdict(wait)
    return out


if __name__ == "__main__":
    data = json.dumps(capture(), indent=2, sort_keys=True)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(data + "\n")
    else:
        print(data)
