"""Run code that must load the stub through LD_LIBRARY_PATH (tests/conftest.py's fixtures use it).

The dynamic loader reads LD_LIBRARY_PATH once, when a process starts, and pynvml
keeps the library it loaded for the life of the process. So each check runs in a
fresh Python subprocess whose environment points at the stub's directory (or at one
through which no library loads, for "no driver") and at a state file the test controls.
The script given to :func:`run_stub_script` runs with ``set_state(**updates)`` and
``STATE`` in scope and must assign a JSON-serialisable ``result``; it comes back as the
return value.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llem_testkit import REPO_ROOT
from llem_testkit.engine import skip_unless_possible
from llem_testkit.nvml_stub.build import LIBRARY_NAME

NOT_SUPPORTED = 3
GPU_IS_LOST = 15
DRIVER_NOT_LOADED = 9

_PRELUDE = '''
import json, os, sys, time
STATE = os.environ["FAKE_NVML_STATE"]

def _read_state():
    out = {}
    with open(STATE) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\\n").split("=", 1)
                out[k] = v
    return out

def set_state(**updates):
    """Merge updates (dots written as __) into the state file, atomically."""
    state = _read_state()
    state.update({k.replace("__", "."): str(v) for k, v in updates.items()})
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(f"{k}={v}\\n" for k, v in state.items())
    os.replace(tmp, STATE)

result = None
'''

_EPILOGUE = """
print("\\n@@RESULT@@" + json.dumps(result))
"""


@dataclass
class Stub:
    """Where the stub library lives, and a state file to drive it."""

    lib_dir: Path
    state_file: Path

    @property
    def settings_file(self) -> Path:
        """Where the stub keeps what NVML setters changed (power limit, locked clocks).

        ``<state_file>.settings`` unless the state names another (``settings_file=``); see
        the header of ``fake_nvml.c`` for its format. Removing it resets every setting.
        """
        return self.state_file.with_name(self.state_file.name + ".settings")

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the stub's state: ``{"count": 2, "gpu0.power_mw": 300000, ...}``."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in state.items()))
        os.replace(tmp, self.state_file)

    def run(
        self,
        script: str,
        state: dict[str, Any] | None = None,
        *,
        lib_dir: Path | None = None,
        timeout: float = 30,
    ) -> Any:
        """Run ``script`` in a subprocess on the stub; see the module docstring."""
        if state is not None:
            self.write_state(state)
        return run_stub_script(script, lib_dir or self.lib_dir, self.state_file, timeout)


def run_stub_script(script: str, lib_dir: Path, state_file: Path, timeout: float = 30) -> Any:
    """Run ``script`` with LD_LIBRARY_PATH=lib_dir and FAKE_NVML_STATE=state_file."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(lib_dir)
    env["FAKE_NVML_STATE"] = str(state_file)
    code = _PRELUDE + textwrap.dedent(script) + _EPILOGUE
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    marker = "@@RESULT@@"
    if proc.returncode != 0 or marker not in proc.stdout:
        raise AssertionError(
            f"stub script failed (exit {proc.returncode})\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr}"
        )
    return json.loads(proc.stdout.rsplit(marker, 1)[1])


def system_has_nvml() -> bool:
    """Whether a real libnvidia-ml is installed (then it must be hidden to stage 'absent')."""
    return ctypes.util.find_library("nvidia-ml") is not None


#: -D macro that builds the stub as an older driver's library (no ...ClocksEventReasons)
LEGACY_DEFINES = ("NO_CLOCKS_EVENT_REASONS",)


def new_stub(lib_dir: Path, base: Path) -> Stub:
    """A fresh state file (one GPU) under ``base``, next to the stub library in ``lib_dir``."""
    s = Stub(lib_dir, base / "nvml_state")
    s.write_state({"count": 1})
    return s


def nvml_loads_through(lib_dir: Path) -> bool:
    """Whether pynvml's own load, ``CDLL("libnvidia-ml.so.1")``, succeeds with this search path.

    Runs in a fresh process: the loader reads LD_LIBRARY_PATH when a process starts.
    """
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir))
    code = (
        "import ctypes, sys\n"
        "try:\n"
        f"    ctypes.CDLL({LIBRARY_NAME!r})\n"
        "except OSError:\n"
        "    sys.exit(0)\n"
        "print('loaded')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"library check failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout.strip() == "loaded"


def make_no_nvml_dir(base: Path) -> Path:
    """A directory ``base/no_nvml`` through which pynvml's ``CDLL("libnvidia-ml.so.1")`` fails.

    On a host without a driver it is simply empty. On one with a real libnvidia-ml (the GPU
    box), the loader would go on to ld.so.cache and find it, so the directory holds a
    ``libnvidia-ml.so.1`` that is not an ELF file: glibc stops the search at the first file of
    that name in LD_LIBRARY_PATH and dlopen fails ("invalid ELF header"), which pynvml reports
    as NVML_ERROR_LIBRARY_NOT_FOUND, exactly as for a missing library. Checked before use: where
    it still loads, the test skips (fails under ``LLEM_REQUIRE_DOCKER``).
    """
    empty = base / "no_nvml"
    empty.mkdir()
    if system_has_nvml():
        (empty / LIBRARY_NAME).write_text("not a library: hides the host's libnvidia-ml\n" * 4)
    if nvml_loads_through(empty):
        skip_unless_possible(f"{LIBRARY_NAME} still loads past {empty}; 'no driver' not staged")
    return empty
