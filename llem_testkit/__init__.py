"""The test harness of llem: what tests/, bench/ and chaos/ share.

Installed with the package (``pip install -e '.[dev]'``, setup.cfg's ``packages``), so every
user imports it by name, with no ``sys.path`` edit:

* :mod:`llem_testkit.engine`: is a Docker engine here, and the ``docker`` marker rule
  (skip where none is reachable, fail where ``LLEM_REQUIRE_DOCKER`` is set);
* :mod:`llem_testkit.runspec`: a unique compose project and run directory for the
  ContainerManager tests, on the compose files in ``data/compose``;
* :mod:`llem_testkit.e2e`: a campaign in a temporary folder and real ``llem`` processes
  (the end-to-end tests and the chaos scenarios);
* :mod:`llem_testkit.nvml_stub`: the stand-in ``libnvidia-ml.so.1`` compiled from
  ``fake_nvml.c``, and the means to run code on it.

The pytest fixtures built on these stay in ``tests/conftest.py``. This module imports nothing
heavy (bench scripts take :data:`TEST_IMAGE` from it).
"""

from __future__ import annotations

from pathlib import Path

#: the local image ``scripts/engine.sh`` builds: busybox with a stand-in nvidia-smi
TEST_IMAGE = "llem-test-busybox:latest"

#: the harness's own files (compose projects), found beside this module
DATA_DIR = Path(__file__).resolve().parent / "data"
#: compose files of the ContainerManager tests (``basic.yml``)
COMPOSE_DIR = DATA_DIR / "compose"

#: the checkout the harness is installed from (an editable install: ``pip install -e``)
REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["COMPOSE_DIR", "DATA_DIR", "REPO_ROOT", "TEST_IMAGE"]
