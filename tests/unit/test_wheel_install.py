"""``pip install llem`` then ``llem init`` in an empty folder: from a built wheel, in a fresh venv.

The templates ``llem init`` writes are package data (``llem_cli/templates``); an editable install
reads them from the checkout and so cannot tell whether the wheel ships them. This test builds
the wheel from a copy of the sources (no ``build/`` left in the checkout, nothing stale from an
earlier build), installs it with ``--no-deps`` into a new venv with no pip of its own (this
interpreter's pip installs into it with ``--python``), and lends it this environment's
dependencies (click, pyyaml, pydantic, ...) through a ``.pth`` file, so nothing but the wheel's
build backend is downloaded. Then, from a folder with no ``compose/`` around it, as a new user
would: ``llem init``, ``llem init --compose`` and ``llem validate``. About 15 s, most of it
pip's isolated build (setuptools and wheel come from the package index or pip's cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from llem_cli.templates import render_compose, script_text

ROOT = Path(__file__).resolve().parents[2]
#: what a build of the llem distribution reads from the checkout
SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "llem_cli")


def run(argv: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command with no PYTHONPATH, so only the venv's own paths count."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _can_build_without_isolation() -> bool:
    """True when this environment's setuptools can build a wheel itself (no download)."""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1):  # bdist_wheel moved into setuptools
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return major >= 61  # setup.cfg metadata through pyproject.toml


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout installed; its ``bin/`` folder."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(origin, src / name, ignore=ignore)
        else:
            shutil.copy2(origin, src / name)
    wheels = base / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, src]
    if _can_build_without_isolation():
        build.insert(4, "--no-build-isolation")
    done = run(build, cwd=base, timeout=300)
    assert done.returncode == 0, f"wheel build failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = wheels.glob("llem-*.whl")

    venv = base / "venv"
    done = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base)
    assert purelib.returncode == 0, purelib.stderr
    # Dependencies only: a plain path in a .pth file does not run that folder's own .pth files,
    # so the checkout's editable llem stays out; the venv's own site-packages comes first.
    deps = sysconfig.get_paths()["purelib"]
    (Path(purelib.stdout.strip()) / "llem_test_deps.pth").write_text(deps + "\n")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
    done = run([*install, "--no-index", wheel], cwd=base)
    assert done.returncode == 0, f"install failed:\n{done.stdout}\n{done.stderr}"
    return venv / "bin"


def test_the_installed_llem_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    done = run([installed / "python", "-c", "import llem_cli.templates as t; print(t.__file__)"],
               tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.parent)


def test_init_then_validate_in_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    llem = installed / "llem"
    done = run([llem, "init", "--backend", "vllm", "--model", "gpt2", "new.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["wrote new.yaml", "wrote new.compose.yml"]
    assert "no compose/vllm.yml beside or above new.yaml" in done.stderr

    done = run([llem, "init", "--backend", "pytorch", "--compose", "x.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "wrote x.yaml",
        "wrote x.compose.yml",
        "wrote scripts/llem_generate_bench.py",
    ]

    done = run([llem, "validate", "new.yaml", "x.yaml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "new.compose.yml").read_text() == render_compose(["vllm"])
    assert (tmp_path / "x.compose.yml").read_text() == render_compose(["pytorch"])
    script = tmp_path / "scripts" / "llem_generate_bench.py"
    assert script.read_text() == script_text("llem_generate_bench.py")

    done = run([llem, "init", "--backend", "vllm", "--model", "gpt2", "new.yaml"], tmp_path)
    assert done.returncode == 2  # no overwrite without --force
    assert "already exists" in done.stderr and "--force" in done.stderr


def test_serving_init_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """`llem init --serve` reads serving.yaml.tmpl and the option file the TensorRT-LLM server
    mounts (compose/scripts/*.yml): both must be package data."""
    llem = installed / "llem"
    done = run([llem, "init", "--serve", "-b", "tensorrt", "-b", "sglang", "s.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "wrote s.yaml",
        "wrote s.compose.yml",
        "wrote scripts/llem_trtllm_serve.yml",  # the server's, then the client's
        "wrote scripts/llem_sglang_dataset.py",
    ]
    done = run([llem, "validate", "s.yaml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    options = tmp_path / "scripts" / "llem_trtllm_serve.yml"
    assert options.read_text() == script_text("llem_trtllm_serve.yml")
