"""Compile ``fake_nvml.c`` into ``DIR/libnvidia-ml.so.1`` (the soname pynvml dlopens)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

#: the stub's C source, shipped beside this module in the harness package
SOURCE = Path(__file__).resolve().with_name("fake_nvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"


def build_stub(dest: Path, defines: Iterable[str] = ()) -> Path:
    """Build the stub into ``dest`` and return ``dest``; ``defines`` are -D macros."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc (or cc) is needed to build the NVML stub for the tests")
    dest.mkdir(parents=True, exist_ok=True)
    argv = [
        gcc,
        "-shared",
        "-fPIC",
        "-O1",
        *(f"-D{d}" for d in defines),
        "-o",
        str(dest / LIBRARY_NAME),
        str(SOURCE),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the NVML stub failed:\n{' '.join(argv)}\n{proc.stderr}")
    return dest
