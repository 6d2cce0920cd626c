"""A stand-in ``libnvidia-ml.so.1`` for the tests, and the helpers that build and drive it.

``fake_nvml.c`` (beside this module) is compiled by :func:`build_stub`; :class:`Stub` and
:func:`run_stub_script` run code on it in a fresh process (see :mod:`.runner`).
``python -m llem_testkit.nvml_stub [DIR]`` builds the library by hand;
``python -m llem_testkit.nvml_stub.capture_real_gpu FILE`` records a real GPU's answers.
"""

from llem_testkit.nvml_stub.build import LIBRARY_NAME, SOURCE, build_stub
from llem_testkit.nvml_stub.runner import (
    DRIVER_NOT_LOADED,
    GPU_IS_LOST,
    LEGACY_DEFINES,
    NOT_SUPPORTED,
    Stub,
    make_no_nvml_dir,
    new_stub,
    nvml_loads_through,
    run_stub_script,
    system_has_nvml,
)

__all__ = [
    "DRIVER_NOT_LOADED",
    "GPU_IS_LOST",
    "LEGACY_DEFINES",
    "LIBRARY_NAME",
    "NOT_SUPPORTED",
    "SOURCE",
    "Stub",
    "build_stub",
    "make_no_nvml_dir",
    "new_stub",
    "nvml_loads_through",
    "run_stub_script",
    "system_has_nvml",
]
