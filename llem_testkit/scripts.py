"""Python files that are not part of an installed package, loaded as modules for tests.

The engine scripts llem mounts into containers (``/llem/scripts``) and ``scripts/check_engines.py``
are run as files, never imported by llem; tests load them by path, through this one function.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from llem_testkit import REPO_ROOT

#: the mounted engine scripts' one source (``compose/scripts`` links here)
ENGINE_SCRIPTS = REPO_ROOT / "llem_cli" / "templates" / "compose" / "scripts"


def load_file(path: Path, name: str | None = None) -> ModuleType:
    """The module at ``path``, registered in ``sys.modules`` under ``name`` (default: its stem),
    as a dataclass or a pickle looking its module up while the file runs needs."""
    module_name = name or path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_script(name: str) -> ModuleType:
    """One of the engine scripts (e.g. ``llem_generate_bench.py``)."""
    return load_file(ENGINE_SCRIPTS / name)
