"""The stand-in NVML is told apart from a real one: measurements on it are marked simulated."""

from __future__ import annotations

from pathlib import Path

from llem_cli.runner.measuring import record_fields
from llem_cli.telemetry.measurement import Measurement
from llem_testkit.nvml_stub import build_stub, new_stub

WINDOW = """
from llem_cli.telemetry import EnergyMonitor
from llem_cli.telemetry.nvml import open_gpus
with open_gpus() as gpus:
    simulated = gpus.simulated
mon = EnergyMonitor(sample_interval_s=0.02)
set_state(t0=time.time())
mon.begin_window("exp", None)
time.sleep(0.2)
m = mon.end_window("exp")
mon.close()
result = {"set": simulated, "m": m.to_dict()}
"""


def test_the_stand_in_is_simulated(stub):
    out = stub.run(WINDOW, {"gpu0.energy_rate_mw": 300_000})
    assert out["set"] is True
    assert out["m"]["simulated"] is True
    assert out["m"]["energy_j"] is not None


def test_a_library_without_the_marker_is_not_simulated(tmp_path: Path):
    # the stub built without its marker symbol stands for a real driver's libnvidia-ml
    lib = build_stub(tmp_path / "real", ["LLEM_NO_SIMULATION_MARKER"])
    out = new_stub(lib, tmp_path).run(WINDOW, {"gpu0.energy_rate_mw": 300_000})
    assert out["set"] is False
    assert out["m"]["simulated"] is False
    assert out["m"]["energy_j"] is not None


def test_record_carries_the_flag():
    m = Measurement(key="k", gpu_indices=[0], started_at=0, ended_at=1, duration_s=1)
    assert record_fields(m, None)["measurement"]["simulated"] is False
    m.simulated = True
    assert record_fields(m, None)["measurement"]["simulated"] is True
    assert record_fields(None, None)["measurement"] is None  # nothing measured: no claim
