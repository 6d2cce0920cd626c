"""``make demo``'s simulated GPU: the stand-in NVML set up as one plausible GPU, opt-in only.

    eval "$(python -m llem_testkit.nvml_stub.simulated [--dir .cache/simulated-gpu])"

builds ``fake_nvml.c`` into ``DIR/lib``, writes its state file ``DIR/state`` (one GPU named
"Simulated GPU": 60 W idle, 240 W more while busy, its busy periods read from ``DIR/busy``,
which the demo's compose file mounts into the gpu-sim service for ``llem-fake-busy``) and
prints the ``export`` lines that put the stand-in on ``LD_LIBRARY_PATH``. Nothing else ever
loads it: a run is simulated only when whoever starts it sourced these lines, and llem then
marks every measurement ``simulated`` (the library exports ``llem_fake_nvml``), so simulated
figures never pass for a real GPU's.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from llem_testkit import REPO_ROOT
from llem_testkit.nvml_stub.build import build_stub

DEFAULT_DIR = REPO_ROOT / ".cache" / "simulated-gpu"
#: GPU 0's UUID in the stub (and in the test image's nvidia-smi): its busy file's name
GPU0_UUID = "GPU-00000000-0000-0000-0000-000000000000"

IDLE_MW = 60_000
BUSY_EXTRA_MW = 240_000


def state_lines(busy_dir: Path, t0: float) -> list[str]:
    """The stub's state for one plausible 80 GB GPU (see fake_nvml.c's header for the keys)."""
    return [
        "# make demo's simulated GPU (llem_testkit/nvml_stub/simulated.py): not a real GPU",
        "count=1",
        "driver=000.00.00-simulated",
        f"t0={t0:.6f}",
        "gpu0.name=Simulated GPU",
        f"gpu0.mem_total={80 * 1024**3}",
        f"gpu0.mem_used={1024**3}",
        "gpu0.energy_mj=0",
        f"gpu0.energy_rate_mw={IDLE_MW}",
        f"gpu0.power_mw={IDLE_MW}",
        f"gpu0.busy_power_mw={BUSY_EXTRA_MW}",
        "gpu0.temp_c=41",
        f"busy_dir={busy_dir}",
    ]


def prepare(base: Path) -> tuple[Path, Path]:
    """Build the library and write a fresh state (and an empty busy folder); (lib dir, state)."""
    lib = build_stub(base / "lib")
    busy = base / "busy"
    busy.mkdir(parents=True, exist_ok=True)
    for old in busy.iterdir():  # the last demo's busy periods would count again
        if old.is_file():
            old.unlink()
    state = base / "state"
    settings = base / "state.settings"
    settings.unlink(missing_ok=True)
    tmp = state.with_suffix(".tmp")
    tmp.write_text("\n".join(state_lines(busy, time.time())) + "\n")
    tmp.replace(state)
    return lib, state


def main(argv: list[str] | None = None) -> int:
    """Prepare the simulated GPU and print the shell lines that select it."""
    parser = argparse.ArgumentParser(prog="python -m llem_testkit.nvml_stub.simulated")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where to build and keep it")
    args = parser.parse_args(argv)
    lib, state = prepare(args.dir.resolve())
    print(f"export LD_LIBRARY_PATH={shlex.quote(str(lib))}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}")
    print(f"export FAKE_NVML_STATE={shlex.quote(str(state))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
