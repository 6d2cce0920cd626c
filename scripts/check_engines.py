"""``make check-engines``: the shipped engine commands, checked against the pinned engines' sources.

The engine commands llem ships (``llem init``'s templates and the campaigns in ``campaigns/``) were
written from the engines' documentation; an engine release that renamed one flag would make every
experiment of that engine fail, on a GPU machine, hours into a campaign. This check needs no GPU,
no Docker and none of the engines' dependencies:

1. the version of each engine is read off its image tag in ``llem_cli/templates/compose/*.yml``;
2. that release's wheel is downloaded from PyPI with ``pip download --no-deps`` (nothing is
   installed or imported) into ``.cache/engines``, once; where PyPI has no wheel (TensorRT-LLM's
   PyPI project is a stub that points at NVIDIA's index) the release's files are fetched from its
   GitHub tag instead, and when neither is reachable the engine is reported ``not checked``,
   never passed;
3. every option of every shipped command is looked up, with :mod:`ast`, in the ``add_argument``
   and click ``option`` calls of the functions that build the parser of the command it belongs to
   (``vllm bench throughput``, ``python3 -m sglang.bench_offline_throughput``,
   ``trtllm-bench ... throughput``, and llem's own scripts; for the serving backends the servers,
   ``vllm serve``, ``python3 -m sglang.launch_server``, ``trtllm-serve``, and their clients,
   ``vllm bench serve``, ``python3 -m sglang.bench_serving``,
   ``python3 -m tensorrt_llm.serve.scripts.benchmark_serving``), and so is every subcommand word;
   an option the release builds at run time (vLLM's ``--port`` from a dataclass field, its
   ``--no-...`` from ``BooleanOptionalAction``) counts only where the lines that build it are
   all found (``derived``);
4. SGLang's data path is run: the pinned ``get_dataset``/``sample_random_requests`` and the
   warm-up's call, lifted out of the wheel's source and run with stand-ins for numpy and the
   tokenizer, on the file ``llem_sglang_dataset.py`` writes, with sockets disabled, so
   "no download" is shown on the pinned code, not assumed;
5. where an image is already pulled, its entrypoint and Python version are read (nothing is
   pulled).

One line per (engine, flag): where it is defined, or MISSING. Exit 1 on anything missing or
failed; ``--require-all`` also fails (exit 3) when an engine could not be checked.
``--update-doc docs/engines.md`` puts the output between that file's markers, which is how
``make check-engines`` keeps the last output beside the versions it was made for.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import datetime
import functools
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file (make, CI): llem_cli from this checkout

from llem_cli.templates import BACKENDS, SCRIPTS_MOUNT, SERVING, compose_text  # noqa: E402

CACHE = ROOT / ".cache" / "engines"
SCRIPTS = ROOT / "llem_cli" / "templates" / "compose" / "scripts"
CAMPAIGNS = ROOT / "campaigns"
DOC_BEGIN = "<!-- check-engines output: begin -->"
DOC_END = "<!-- check-engines output: end -->"
PIP_TIMEOUT_S = 1800  # vLLM's wheel is ~415 MB
FETCH_TIMEOUT_S = 30
DOCKER_TIMEOUT_S = 300

#: the calls that declare a command-line option: argparse's ``add_argument`` (on a parser or a
#: group) and click's ``option`` (``click.option``, ``optgroup.option``)
OPTION_CALLS = frozenset({"add_argument", "option"})


# --- what is checked, per engine ------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """A line in a file that shows a subcommand word is real (a regular expression)."""

    path: str
    pattern: str


@dataclass(frozen=True)
class Stage:
    """One program or subcommand word of a command, and where the options after it are declared.

    ``scopes`` are ``path::Qualified.name`` (or just ``path`` for a whole file): the functions
    whose ``add_argument``/``option`` calls build that parser. ``own`` stages are llem's scripts,
    read from this checkout; the others from the engine's release.
    """

    word: str
    scopes: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    own: bool = False
    #: options the release builds at run time, each with the lines that show how: found only
    #: when every one of them is (never a literal that is not there)
    derived: tuple[tuple[str, tuple[Evidence, ...]], ...] = ()


@dataclass(frozen=True)
class Engine:
    """An engine llem ships a command for: how to find its release and parse its commands.

    ``backend`` is the campaign backend the argv belongs to and ``part`` which of its argvs
    (``command``; a serving backend's ``serve`` too); ``image`` the backend whose compose file
    pins the release (default: ``backend``; a serving backend runs on its engine's service).
    """

    backend: str
    stages: tuple[Stage, ...]
    distribution: str | None = None  # PyPI project; None: llem's own script only
    version_pattern: str = ""  # on the image reference; group "version"
    github: str | None = None  # owner/name: the release's files from its tag, if PyPI has none
    part: str = "command"
    image: str | None = None

    @property
    def label(self) -> str:
        """How the report names it: the backend, and for a serving backend the argv's field."""
        return self.backend if self.image is None else f"{self.backend}.{self.part}"

    @property
    def image_backend(self) -> str:
        """The backend whose compose file gives the image (and so the version)."""
        return self.image or self.backend


def _script(name: str) -> Stage:
    """The stage of one of llem's mounted scripts: its options are its ``parse_args``."""
    return Stage(
        word=f"{SCRIPTS_MOUNT}/{name}",
        scopes=(f"llem_cli/templates/compose/scripts/{name}::parse_args",),
        own=True,
    )


VLLM_VERSION = r"^vllm/vllm-openai:v(?P<version>[0-9][^-]*)$"
SGLANG_VERSION = r"^lmsysorg/sglang:v(?P<version>[0-9][^-]*)(-.*)?$"
TENSORRT_VERSION = r"^nvcr\.io/nvidia/tensorrt-llm/release:(?P<version>[0-9][^-]*)$"
VLLM_ENTRY = Evidence("*.dist-info/entry_points.txt", r"^vllm = vllm\.entrypoints\.cli\.main:main$")
VLLM_ARG_UTILS = "vllm/engine/arg_utils.py"
VLLM_FRONTEND = "vllm/entrypoints/openai/cli_args.py"
#: vLLM builds a ``--x``/``--no-x`` pair for every boolean config field
VLLM_BOOLEAN = Evidence(
    VLLM_ARG_UTILS, r'kwargs\[name\]\["action"\] = argparse\.BooleanOptionalAction'
)
SGLANG_DATASET = _script("llem_sglang_dataset.py")

#: the serving backends' argvs (llem_cli.templates.SERVING): each server and each client
SERVING_ENGINES: tuple[Engine, ...] = (
    Engine(
        "vllm-serve",
        (
            Stage("vllm", evidence=(VLLM_ENTRY,)),
            Stage(
                "serve",
                scopes=(
                    f"{VLLM_FRONTEND}::make_arg_parser",
                    f"{VLLM_FRONTEND}::FrontendArgs.add_cli_args",
                    f"{VLLM_ARG_UTILS}::EngineArgs.add_cli_args",
                    f"{VLLM_ARG_UTILS}::AsyncEngineArgs.add_cli_args",
                ),
                evidence=(
                    Evidence("vllm/entrypoints/cli/serve.py", r'^\s*name = "serve"$'),
                    Evidence("vllm/entrypoints/cli/main.py", r"vllm\.entrypoints\.cli\.serve,"),
                ),
                derived=(
                    (
                        "--port",
                        (
                            Evidence(VLLM_FRONTEND, r"^\s+port: int = 8000$"),
                            Evidence(
                                VLLM_FRONTEND,
                                r"add_argument\(f\"--\{key\.replace\('_', '-'\)\}\", \*\*value\)",
                            ),
                        ),
                    ),
                    (
                        "--no-enable-prefix-caching",
                        (
                            Evidence(VLLM_ARG_UTILS, r'add_argument\("--enable-prefix-caching",$'),
                            Evidence(
                                "vllm/config/cache.py", r"enable_prefix_caching: Optional\[bool\]"
                            ),
                            VLLM_BOOLEAN,
                        ),
                    ),
                ),
            ),
        ),
        distribution="vllm",
        version_pattern=VLLM_VERSION,
        part="serve",
        image="vllm",
    ),
    Engine(
        "vllm-serve",
        (
            Stage("vllm", evidence=(VLLM_ENTRY,)),
            Stage(
                "bench",
                evidence=(
                    Evidence("vllm/entrypoints/cli/benchmark/main.py", r'^\s*name = "bench"$'),
                ),
            ),
            Stage(
                "serve",
                scopes=(
                    "vllm/benchmarks/serve.py::add_cli_args",
                    "vllm/benchmarks/datasets.py::add_dataset_parser",
                ),
                evidence=(
                    Evidence("vllm/entrypoints/cli/benchmark/serve.py", r'^\s*name = "serve"$'),
                    Evidence("vllm/entrypoints/cli/__init__.py", r"BenchmarkServingSubcommand$"),
                ),
            ),
        ),
        distribution="vllm",
        version_pattern=VLLM_VERSION,
        image="vllm",
    ),
    Engine(
        "sglang-serve",
        (
            Stage(
                "sglang.launch_server",
                scopes=("sglang/srt/server_args.py::ServerArgs.add_cli_args",),
                evidence=(Evidence("sglang/launch_server.py", r'^if __name__ == "__main__":$'),),
            ),
        ),
        distribution="sglang",
        version_pattern=SGLANG_VERSION,
        part="serve",
        image="sglang",
    ),
    Engine(
        "sglang-serve",
        (
            SGLANG_DATASET,
            Stage(
                "sglang.bench_serving",
                scopes=("sglang/bench_serving.py",),
                evidence=(Evidence("sglang/bench_serving.py", r'^if __name__ == "__main__":$'),),
            ),
        ),
        distribution="sglang",
        version_pattern=SGLANG_VERSION,
        image="sglang",
    ),
    Engine(
        "tensorrt-serve",
        (
            Stage(
                "trtllm-serve",
                scopes=("tensorrt_llm/commands/serve.py::serve",),
                evidence=(
                    Evidence("tensorrt_llm/commands/serve.py", r'^@click\.command\("serve"\)$'),
                ),
            ),
        ),
        distribution="tensorrt_llm",
        version_pattern=TENSORRT_VERSION,
        github="NVIDIA/TensorRT-LLM",
        part="serve",
        image="tensorrt",
    ),
    Engine(
        "tensorrt-serve",
        (
            SGLANG_DATASET,
            Stage(
                "tensorrt_llm.serve.scripts.benchmark_serving",
                scopes=("tensorrt_llm/serve/scripts/benchmark_serving.py",),
                evidence=(
                    Evidence(
                        "tensorrt_llm/serve/scripts/benchmark_serving.py",
                        r'^if __name__ == "__main__":$',
                    ),
                ),
            ),
        ),
        distribution="tensorrt_llm",
        version_pattern=TENSORRT_VERSION,
        github="NVIDIA/TensorRT-LLM",
        image="tensorrt",
    ),
)

ENGINES: dict[str, Engine] = {
    "pytorch": Engine("pytorch", (_script("llem_generate_bench.py"),)),
    "vllm": Engine(
        "vllm",
        (
            Stage(
                "vllm",
                evidence=(
                    Evidence(
                        "*.dist-info/entry_points.txt",
                        r"^vllm = vllm\.entrypoints\.cli\.main:main$",
                    ),
                ),
            ),
            Stage(
                "bench",
                evidence=(
                    Evidence("vllm/entrypoints/cli/benchmark/main.py", r'^\s*name = "bench"$'),
                    Evidence(
                        "vllm/entrypoints/cli/main.py", r"vllm\.entrypoints\.cli\.benchmark\.main,"
                    ),
                ),
            ),
            Stage(
                "throughput",
                scopes=(
                    "vllm/benchmarks/throughput.py::add_cli_args",
                    "vllm/engine/arg_utils.py::EngineArgs.add_cli_args",
                    "vllm/engine/arg_utils.py::AsyncEngineArgs.add_cli_args",
                ),
                evidence=(
                    Evidence(
                        "vllm/entrypoints/cli/benchmark/throughput.py", r'^\s*name = "throughput"$'
                    ),
                    Evidence(
                        "vllm/entrypoints/cli/__init__.py", r"BenchmarkThroughputSubcommand\)?$"
                    ),
                ),
            ),
        ),
        distribution="vllm",
        version_pattern=r"^vllm/vllm-openai:v(?P<version>[0-9][^-]*)$",
    ),
    "tensorrt": Engine(
        "tensorrt",
        (
            _script("llem_trtllm_dataset.py"),
            Stage(
                "trtllm-bench",
                scopes=("tensorrt_llm/commands/bench.py::main",),
                evidence=(
                    Evidence(
                        "tensorrt_llm/commands/bench.py", r'@click\.group\(name="trtllm-bench"'
                    ),
                ),
            ),
            Stage(
                "throughput",
                scopes=("tensorrt_llm/bench/benchmark/throughput.py::throughput_command",),
                evidence=(
                    Evidence(
                        "tensorrt_llm/bench/benchmark/throughput.py",
                        r'@click\.command\(name="throughput"\)',
                    ),
                    Evidence(
                        "tensorrt_llm/commands/bench.py", r"add_command\(throughput_command\)"
                    ),
                ),
            ),
        ),
        distribution="tensorrt_llm",
        version_pattern=r"^nvcr\.io/nvidia/tensorrt-llm/release:(?P<version>[0-9][^-]*)$",
        github="NVIDIA/TensorRT-LLM",
    ),
    "sglang": Engine(
        "sglang",
        (
            _script("llem_sglang_dataset.py"),
            Stage(
                "sglang.bench_offline_throughput",
                scopes=(
                    "sglang/bench_offline_throughput.py::BenchArgs.add_cli_args",
                    "sglang/srt/server_args.py::ServerArgs.add_cli_args",
                ),
                evidence=(
                    Evidence("sglang/bench_offline_throughput.py", r'^if __name__ == "__main__":$'),
                ),
            ),
        ),
        distribution="sglang",
        version_pattern=SGLANG_VERSION,
    ),
    **{engine.label: engine for engine in SERVING_ENGINES},
}


# --- reading a release: a wheel or a folder of files ----------------------------------------------


class Source(Protocol):
    """Text files of one release (or of this checkout), by path inside it."""

    label: str

    def read(self, path: str) -> str | None:
        """The file's text, or None when the release has no such file."""
        ...

    def names(self) -> list[str]:
        """Every file path it holds."""
        ...


class WheelSource:
    """A wheel, read as the zip it is: no extraction, no installation, no import."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)"
        with zipfile.ZipFile(path) as archive:
            self._names = archive.namelist()

    def read(self, path: str) -> str | None:
        """The member's text, or None when the wheel has no such file."""
        if path not in self._names:
            return None
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(path).decode("utf-8")

    def names(self) -> list[str]:
        """Every member of the wheel."""
        return list(self._names)


class FolderSource:
    """Files under a folder: this checkout, or release files fetched one by one."""

    def __init__(self, root: Path, label: str) -> None:
        self.root = root
        self.label = label

    def read(self, path: str) -> str | None:
        """The file's text, or None when there is no such file."""
        try:
            return (self.root / path).read_text(encoding="utf-8")
        except OSError:
            return None

    def names(self) -> list[str]:
        """Every file under the folder, as a relative POSIX path."""
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )


def find_file(source: Source, pattern: str) -> str | None:
    """The path of ``pattern`` in ``source``: the path itself, or the first match of a glob."""
    if "*" not in pattern:
        return pattern if source.read(pattern) is not None else None
    regex = re.compile("^" + re.escape(pattern).replace(r"\*", "[^/]*") + "$")
    return next((name for name in sorted(source.names()) if regex.match(name)), None)


# --- option declarations, from source text --------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """Where an option is declared: file, line, and the function around the call."""

    path: str
    line: int
    scope: str

    def render(self) -> str:
        """``path:line (scope)``, as the report shows it."""
        return (
            f"{self.path}:{self.line} ({self.scope})" if self.scope else f"{self.path}:{self.line}"
        )


class ScopeMissing(LookupError):
    """The function a parser was expected in is not in the file: the source moved on."""


def find_scope(tree: ast.Module, qualname: str) -> ast.AST:
    """The node of ``Class.method`` or ``function`` (module level, one level of classes)."""
    node: ast.AST = tree
    for part in qualname.split(".") if qualname else []:
        body = getattr(node, "body", [])
        found = [
            child
            for child in body
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and child.name == part
        ]
        if not found:
            raise ScopeMissing(qualname)
        node = found[-1]  # a later definition replaces an earlier one, as at run time
    return node


def _callee(call: ast.Call) -> str:
    """``add_argument`` of ``parser.add_argument(...)``, ``option`` of ``option(...)``."""
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return ""


def declared_options(text: str, path: str, qualname: str = "") -> dict[str, Declared]:
    """Every option string (``--flag``, ``-f``) declared by an ``add_argument``/``option`` call
    inside ``qualname`` (decorators included: click declares options there).

    Only string literals count: an option built at run time cannot be proven from the text, so
    it shows as MISSING and gets a look, rather than passing unseen.
    """
    tree = ast.parse(text, filename=path)
    scope = find_scope(tree, qualname)
    found: dict[str, Declared] = {}
    for node in ast.walk(scope):
        if not isinstance(node, ast.Call) or _callee(node) not in OPTION_CALLS:
            continue
        for arg in node.args:
            if (
                isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.startswith("-")
            ):
                found.setdefault(arg.value, Declared(path, arg.lineno, qualname))
    return found


def find_evidence(source: Source, evidence: Evidence) -> Declared | None:
    """The first line of the file matching the evidence's pattern, or None."""
    path = find_file(source, evidence.path)
    text = source.read(path) if path else None
    if path is None or text is None:
        return None
    regex = re.compile(evidence.pattern)
    for number, line in enumerate(text.splitlines(), 1):
        if regex.search(line):
            return Declared(path, number, "")
    return None


# --- the shipped commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One shipped argv of a backend (its ``command``, or a serving backend's ``serve``) and
    where it ships."""

    backend: str
    origin: str
    argv: tuple[str, ...]
    part: str = "command"


PARTS = ("serve", "command")
"""The argvs of a backend that are checked (``ready`` runs the image's Python: no options)."""


def shipped_commands(campaigns: Path = CAMPAIGNS) -> list[Command]:
    """``llem init``'s templates (each engine's, each server's serve and client), and each
    campaign's argvs for a backend so named."""
    origin = "llem init template"
    commands = [Command(name, origin, t.command) for name, t in BACKENDS.items()]
    for serving in SERVING.values():
        commands.append(Command(serving.name, origin, serving.serve, "serve"))
        commands.append(Command(serving.name, origin, serving.command))
    known = {engine.backend for engine in ENGINES.values()}
    for path in sorted(campaigns.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, backend in (data.get("backends") or {}).items():
            if name not in known or not isinstance(backend, dict):
                continue
            for part in PARTS:
                if isinstance(backend.get(part), list):
                    argv = tuple(str(item) for item in backend[part])
                    commands.append(Command(name, f"campaigns/{path.name}", argv, part))
    return commands


def commands_of(engine: Engine, commands: Sequence[Command]) -> list[Command]:
    """The shipped argvs an engine entry checks: its backend's, of its part."""
    return [c for c in commands if c.backend == engine.backend and c.part == engine.part]


class StageNotFound(LookupError):
    """A command does not contain a word its engine's command line needs (``throughput``)."""


def _is_option(item: str) -> bool:
    """``--flag``, ``--flag=value``, ``-f``; not ``-``, ``--`` or a negative number."""
    return (
        item.startswith("-") and item not in {"-", "--"} and not re.fullmatch(r"-\d+(\.\d*)?", item)
    )


def options_by_stage(argv: Sequence[str], stages: Sequence[Stage]) -> list[tuple[Stage, str]]:
    """Each option of ``argv`` with the stage it belongs to, in order.

    The stages' words are matched in order (an item equal to the next stage's word starts it);
    items before the first stage (``python3 -m``) and after a ``--`` (until the next stage's
    word: the command a script execs) are not options of any stage.
    """
    result: list[tuple[Stage, str]] = []
    current: Stage | None = None
    upcoming = 0
    ended = False
    for item in argv:
        if upcoming < len(stages) and item == stages[upcoming].word:
            current, upcoming, ended = stages[upcoming], upcoming + 1, False
        elif item == "--":
            ended = True
        elif current is not None and not ended and _is_option(item):
            result.append((current, item.split("=", 1)[0]))
    if upcoming < len(stages):
        raise StageNotFound(stages[upcoming].word)
    return result


def image_of(backend: str) -> str:
    """The image reference of a backend's shipped compose file."""
    service = yaml.safe_load(compose_text(backend))["services"][backend]
    return str(service["image"])


def pinned_version(engine: Engine) -> str | None:
    """The engine's version, from its image tag."""
    match = (
        re.match(engine.version_pattern, image_of(engine.image_backend))
        if engine.version_pattern
        else None
    )
    return match.group("version") if match else None


# --- getting a release's files --------------------------------------------------------------------


@dataclass
class Fetched:
    """A release's source, or why there is none (each attempt, in order)."""

    source: Source | None
    tried: list[str] = field(default_factory=list)


Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


def run_argv(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run an argv (never a shell string), output captured, with a timeout."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _wheel_in(cache: Path, distribution: str, version: str) -> Path | None:
    """A wheel of that release already in the cache (names normalise ``-`` to ``_``)."""
    stem = re.sub(r"[-_.]+", "_", distribution).lower()
    for path in sorted(cache.glob("*.whl")):
        name, _, rest = path.name.partition("-")
        if re.sub(r"[-_.]+", "_", name).lower() == stem and rest.startswith(f"{version}-"):
            return path
    return None


def fetch_wheel(
    distribution: str, version: str, cache: Path, offline: bool, runner: Runner = run_argv
) -> Fetched:
    """The release's wheel from PyPI (``pip download --no-deps``: the wheel alone), cached."""
    fetched = Fetched(None)
    cached = _wheel_in(cache, distribution, version)
    if cached is None and not offline:
        cache.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
            "--platform", "manylinux1_x86_64", "--platform", "any",
            "--dest", str(cache), f"{distribution}=={version}",
        ]  # fmt: skip
        try:
            done = runner(argv, PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            fetched.tried.append(f"PyPI: pip download timed out after {PIP_TIMEOUT_S}s")
            return fetched
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            fetched.tried.append(f"PyPI: no wheel of {distribution}=={version} ({last.strip()})")
            return fetched
        cached = _wheel_in(cache, distribution, version)
    if cached is None:
        fetched.tried.append(
            "PyPI: not in the cache (--offline)" if offline else "PyPI: no wheel saved"
        )
        return fetched
    fetched.source = WheelSource(cached)
    return fetched


def fetch_github(repo: str, tag: str, paths: Sequence[str], cache: Path, offline: bool) -> Fetched:
    """The given files of a release from its GitHub tag (raw files, each a small download).

    One folder per tag, shared by the engine entries that read it (``tensorrt`` and the
    ``tensorrt-serve`` ones read different files): a file already there is not fetched again,
    and the entry's files must all be there.
    """
    folder = cache / f"{repo.replace('/', '+')}@{tag}"
    label = f"github.com/{repo} at {tag} ({len(paths)} files)"
    missing = [path for path in paths if not (folder / path).is_file()]
    if not missing:
        return Fetched(FolderSource(folder, label))
    if offline:
        return Fetched(None, [f"GitHub {repo}@{tag}: not in the cache (--offline)"])
    for path in missing:
        url = f"https://raw.githubusercontent.com/{repo}/{tag}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 (fixed https host)
                body = response.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Fetched(None, [f"GitHub {repo}@{tag}: {path}: {reason}"])
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(body)
        tmp.replace(target)  # whole or absent: a file here is a file fetched
    return Fetched(FolderSource(folder, label))


def release_paths(engine: Engine) -> list[str]:
    """The files of the release the check reads (scopes and evidence of its engine stages)."""
    paths: list[str] = []
    for stage in engine.stages:
        if stage.own:
            continue
        for item in [s.split("::")[0] for s in stage.scopes] + [e.path for e in stage.evidence]:
            if "*" not in item and item not in paths:
                paths.append(item)
    return paths


def fetch_release(
    engine: Engine, version: str, cache: Path, offline: bool, runner: Runner = run_argv
) -> Fetched:
    """The engine's release: its PyPI wheel, else (if it has one) its GitHub tag's files."""
    assert engine.distribution is not None
    fetched = fetch_wheel(engine.distribution, version, cache, offline, runner)
    if fetched.source is None and engine.github:
        from_tag = fetch_github(engine.github, f"v{version}", release_paths(engine), cache, offline)
        from_tag.tried[:0] = fetched.tried
        return from_tag
    return fetched


# --- checking -------------------------------------------------------------------------------------


@dataclass
class Report:
    """The lines printed, and what they add up to."""

    lines: list[str] = field(default_factory=list)
    found: int = 0
    missing: int = 0
    failed: int = 0
    not_checked: list[str] = field(default_factory=list)

    def add(self, backend: str, item: str, verdict: str, where: str = "") -> None:
        """One aligned line: backend, what was checked, the verdict, where."""
        self.lines.append(f"{backend:<9} {item:<40} {verdict:<8} {where}".rstrip())

    def note(self, text: str) -> None:
        """A line of its own (headers, the attempts that found no source)."""
        self.lines.append(text)


def check_engine(
    engine: Engine, commands: Sequence[Command], release: Source | None, own: Source, report: Report
) -> None:
    """One line per stage word and per option: where it is declared, or MISSING.

    With no ``release`` (none reachable) llem's own scripts are still checked, and each of the
    engine's options gets a ``not checked`` line: never a pass, and the list of what a machine
    with the release must look at.
    """
    declared: dict[Stage, dict[str, Declared]] = {}

    def source_of(stage: Stage) -> Source | None:
        return own if stage.own else release

    for stage in engine.stages:
        source = source_of(stage)
        if source is None:
            if stage.evidence:
                report.add(engine.label, f"`{stage.word}`", "-", "not checked: no source reachable")
            continue
        options: dict[str, Declared] = {}
        for scope in stage.scopes:
            path, _, qualname = scope.partition("::")
            text = source.read(path)
            if text is None:
                report.failed += 1
                report.add(engine.label, f"({path})", "FAILED", "file not in the release")
                continue
            try:
                for option, where in declared_options(text, path, qualname).items():
                    options.setdefault(option, where)
            except ScopeMissing:
                report.failed += 1
                report.add(engine.label, f"({scope})", "FAILED", "function not in the file")
            except SyntaxError as exc:
                report.failed += 1
                report.add(engine.label, f"({path})", "FAILED", f"unparsable here: {exc}")
        declared[stage] = options
        if stage.evidence:
            places = [find_evidence(source, e) for e in stage.evidence]
            if all(places):
                report.found += 1
                report.add(
                    engine.label,
                    f"`{stage.word}`",
                    "found",
                    ", ".join(p.render() for p in places if p),
                )
            else:
                report.missing += 1
                absent = [e.path for e, p in zip(stage.evidence, places, strict=True) if p is None]
                report.add(
                    engine.label, f"`{stage.word}`", "MISSING", "not in " + ", ".join(absent)
                )
    seen: set[tuple[str, str]] = set()
    for command in commands:
        try:
            pairs = options_by_stage(command.argv, engine.stages)
        except StageNotFound as exc:
            report.failed += 1
            report.add(engine.label, f"({command.origin})", "FAILED", f"no `{exc}` in the command")
            continue
        for stage, option in pairs:
            if (stage.word, option) in seen:
                continue
            seen.add((stage.word, option))
            shown = option if not stage.own else f"{Path(stage.word).name} {option}"
            if stage not in declared:
                report.add(engine.label, shown, "-", "not checked: no source reachable")
                continue
            place = declared[stage].get(option)
            derived = dict(stage.derived).get(option)
            source = source_of(stage)
            if place is None and derived is not None and source is not None:
                places = [find_evidence(source, e) for e in derived]
                if all(places):
                    report.found += 1
                    shown_places = ", ".join(p.render() for p in places if p)
                    report.add(engine.label, shown, "derived", shown_places)
                    continue
            if place is None:
                report.missing += 1
                report.add(
                    engine.label,
                    shown,
                    "MISSING",
                    f"after `{stage.word}`: in no {' / '.join(stage.scopes) or 'parser'}",
                )
            else:
                report.found += 1
                report.add(engine.label, shown, "found", place.render())


# --- SGLang's data path, run on the pinned source -------------------------------------------------


class DownloadAttempted(RuntimeError):
    """The pinned code asked for a file from the network."""


class _FakeRandomState:
    """``np.random`` as the sampler uses it: ``randint(low, high, size)``, high exclusive."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def randint(self, low: int, high: int | None = None, size: int | None = None) -> Any:
        if high is None:
            low, high = 0, low
        draw = functools.partial(self._rng.randrange, int(low), int(high))
        return draw() if size is None else [draw() for _ in range(int(size))]


class FakeNumpy:
    """The few numpy calls SGLang's sampler makes, on plain lists."""

    def __init__(self, seed: int) -> None:
        self.random = _FakeRandomState(seed)

    @staticmethod
    def sum(values: Any) -> Any:
        """``np.sum`` of a list."""
        return sum(values)


class FakeTokenizer:
    """One token per whitespace-separated word, decoded back to as many words."""

    vocab_size = 32_000

    def encode(self, text: str, **_: Any) -> list[int]:
        """A token id per word."""
        return [zlib.crc32(word.encode()) % self.vocab_size for word in text.split()]

    def decode(self, ids: Sequence[int], **_: Any) -> str:
        """A word per token id."""
        return " ".join(f"t{token}" for token in ids)


def lift_functions(text: str, path: str, names: Sequence[str]) -> dict[str, ast.FunctionDef]:
    """Module-level functions of a source text, their annotations dropped (they name types the
    check does not have; none is needed to run the body)."""
    tree = ast.parse(text, filename=path)
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                arg.annotation = None
            for extra in (node.args.vararg, node.args.kwarg):
                if extra is not None:
                    extra.annotation = None
            node.returns = None
            found[node.name] = node
    missing = [name for name in names if name not in found]
    if missing:
        raise ScopeMissing(", ".join(missing))
    return found


def run_lifted(nodes: Sequence[ast.FunctionDef], namespace: dict[str, Any], path: str) -> None:
    """Define the lifted functions in ``namespace`` (their globals)."""
    module = ast.Module(body=list(nodes), type_ignores=[])
    exec(compile(ast.fix_missing_locations(module), path, "exec"), namespace)  # noqa: S102 (the pinned release's own functions)


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Every socket connect or name lookup raises while inside."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise DownloadAttempted("network use")

    saved = socket.socket.connect, socket.getaddrinfo, socket.create_connection
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.getaddrinfo, socket.create_connection = saved  # type: ignore[method-assign]


def class_defaults(text: str, path: str, name: str) -> dict[str, Any]:
    """Literal defaults of a dataclass's fields (``field: type = value``), by field name."""
    node = find_scope(ast.parse(text, filename=path), name)
    defaults: dict[str, Any] = {}
    for item in getattr(node, "body", []):
        if (
            isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and item.value is not None
        ):
            with contextlib.suppress(ValueError):
                defaults[item.target.id] = ast.literal_eval(item.value)
    return defaults


def parsed_values(argv: Sequence[str]) -> dict[str, Any]:
    """``--name value`` pairs of an argv as argparse would store them (``name_with_underscores``),
    values typed as int, then float, else kept as text."""
    values: dict[str, Any] = {}
    for index, item in enumerate(argv):
        if item.startswith("--") and len(item) > 2:
            name, has_value, value = item[2:].partition("=")
            if not has_value:
                following = argv[index + 1] if index + 1 < len(argv) else None
                value = following if following is not None and not _is_option(following) else ""
            values[name.replace("-", "_")] = _typed(value)
    return values


def _typed(value: str) -> Any:
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return value


def render(argv: Sequence[str], params: Mapping[str, str]) -> list[str]:
    """The argv with ``{name}`` placeholders filled in (as llem renders them)."""
    return [
        re.sub(r"\{(\w+)\}", lambda m: params.get(m.group(1), m.group(0)), item) for item in argv
    ]


@dataclass(frozen=True)
class Workload:
    """The params of a shipped campaign that shape a SGLang experiment."""

    origin: str
    num_prompts: int
    input_len: int
    output_len: int


def shipped_workloads(campaigns: Path = CAMPAIGNS, backend: str = "sglang") -> list[Workload]:
    """Every (num_prompts, input_len, output_len) a shipped campaign's grid gives ``backend``
    (``sglang``, or the serving ``sglang-serve``)."""
    found: list[Workload] = []
    for path in sorted(campaigns.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        grid = data.get("grid") or {}
        if backend not in (data.get("backends") or {}):
            continue
        for n in grid.get("num_prompts", []):
            for i in grid.get("input_len", []):
                for o in grid.get("output_len", []):
                    found.append(Workload(f"campaigns/{path.name}", int(n), int(i), int(o)))
    return found


BENCH_SERVING = "sglang/bench_serving.py"
OFFLINE = "sglang/bench_offline_throughput.py"
#: ``python3 -m sglang.bench_serving``'s own defaults the sampler reads (its parser is built in
#: ``if __name__ == "__main__":``, not in a class): ``--seed`` (``default=1``)
SERVING_DEFAULTS = {"seed": 1, "dataset_path": ""}


def check_sglang_data(
    release: Source,
    command: Command,
    workload: Workload,
    report: Report,
    python: str = sys.executable,
    label: str = "sglang",
) -> None:
    """Run the shipped command's data preparation and the pinned SGLang sampling on it.

    The llem script part of the command writes the prompts file (its own process, as in the
    container); then the pinned ``get_dataset`` (the measured requests) and every
    ``sample_random_requests`` call of ``throughput_test`` (the warm-up), lifted from the
    release's source, run on it with sockets refused and ``download_and_cache_file`` replaced
    by a function that fails the check. Each must give its requests at the exact lengths.
    The serving client (``sglang.bench_serving``) samples its measured requests through the
    same ``get_dataset``; its warm-up sends the first of them again (none with
    ``--warmup-requests 0``), so no other sampling is run for it.
    """
    name = "data " + workload.origin.removeprefix("campaigns/")
    serving, offline = release.read(BENCH_SERVING), release.read(OFFLINE)
    if serving is None or offline is None:
        report.failed += 1
        report.add(label, name, "FAILED", f"{BENCH_SERVING} or {OFFLINE} not in the release")
        return
    with tempfile.TemporaryDirectory(prefix="llem-check-") as folder:
        params = {
            "model": "model", "experiment_dir": folder, "num_prompts": str(workload.num_prompts),
            "input_len": str(workload.input_len), "output_len": str(workload.output_len),
            "batch_size": "1",
        }  # fmt: skip
        argv = render(command.argv, params)
        engine_argv = argv
        if "--" in argv:  # a mounted script prepares the data, then execs what follows "--"
            cut = argv.index("--")
            script = str(SCRIPTS / Path(argv[1]).name)  # /llem/scripts/x.py: this checkout's
            engine_argv = argv[cut + 1 :]
            done = run_argv([python, script, *argv[2:cut]], 120)
            if done.returncode != 0:
                report.failed += 1
                detail = f"{Path(script).name}: {done.stderr.strip()[-200:]}"
                report.add(label, name, "FAILED", detail)
                return
        client = "sglang.bench_serving" in engine_argv
        defaults = SERVING_DEFAULTS if client else class_defaults(offline, OFFLINE, "BenchArgs")
        args = SimpleNamespace(**(defaults | parsed_values(engine_argv)))
        try:
            skipped = "--skip-warmup" in engine_argv
            outcome = _sample_like_sglang(
                serving, offline, args, workload, skipped, offline_warmup=not client
            )
        except DownloadAttempted as exc:
            report.failed += 1
            report.add(label, name, "FAILED", f"the pinned sampler tried a download ({exc})")
            return
        except Exception as exc:  # noqa: BLE001 (any failure of the lifted code is the check's result)
            report.failed += 1
            report.add(label, name, "FAILED", f"could not run the pinned sampler: {exc!r}")
            return
    report.found += 1
    report.add(label, name, "ok", outcome)


def _sample_like_sglang(
    serving: str,
    offline: str,
    args: SimpleNamespace,
    workload: Workload,
    warmup_skipped: bool = False,
    offline_warmup: bool = True,
) -> str:
    """Measured requests through ``get_dataset``, warm-up through ``throughput_test``'s calls
    (``offline_warmup``: the offline benchmark's; the serving client has none of its own).

    The warm-up's prompts are drawn even with ``--skip-warmup`` (only running them is
    skipped), so they are sampled either way; the line says whether they run.
    """
    download_calls: list[str] = []

    def download_and_cache_file(url: str, filename: str | None = None) -> str:
        download_calls.append(url)
        raise DownloadAttempted(url)

    namespace: dict[str, Any] = {
        "__builtins__": builtins, "__name__": "sglang_lifted", "np": FakeNumpy(args.seed),
        "random": random.Random(args.seed), "json": json, "os": os,
        "download_and_cache_file": download_and_cache_file,
        "SHAREGPT_URL": "https://huggingface.co/datasets/(ShareGPT)", "print": lambda *a, **k: None,
    }  # fmt: skip
    lifted = lift_functions(serving, BENCH_SERVING, ["get_dataset", "sample_random_requests"])
    run_lifted(list(lifted.values()), namespace, BENCH_SERVING)
    tokenizer = FakeTokenizer()
    with no_network():
        measured = namespace["get_dataset"](args, tokenizer)
        calls = _warmup_calls(offline) if offline_warmup else []
        warmups = [_call_with(call, namespace, args, tokenizer) for call in calls]
    if download_calls:
        raise DownloadAttempted(download_calls[0])
    wanted = (workload.num_prompts, workload.input_len, workload.output_len)
    got = (len(measured), {r[1] for r in measured}, {r[2] for r in measured})
    if got != (wanted[0], {wanted[1]}, {wanted[2]}):
        raise ValueError(
            f"measured requests {got}, wanted {wanted[0]} of {wanted[1]} -> {wanted[2]}"
        )
    shown = [f"{len(measured)} requests of {wanted[1]} -> {wanted[2]} tokens"]
    for line, requests in warmups:
        lens = sorted({(r[1], r[2]) for r in requests})
        shown.append(
            f"warm-up ({OFFLINE}:{line}) {len(requests)} of "
            + ", ".join(f"{i} -> {o}" for i, o in lens)
            + (" (sampled, not run: --skip-warmup)" if warmup_skipped else "")
        )
    line = lifted["sample_random_requests"].lineno
    return "; ".join(shown) + f"; no download ({BENCH_SERVING}:{line} sample_random_requests)"


def _warmup_calls(offline: str) -> list[ast.Call]:
    """The ``sample_random_requests(...)`` calls in ``throughput_test``: the warm-up's prompts."""
    scope = find_scope(ast.parse(offline, filename=OFFLINE), "throughput_test")
    calls = [
        n
        for n in ast.walk(scope)
        if isinstance(n, ast.Call) and _callee(n) == "sample_random_requests"
    ]
    return sorted(calls, key=lambda call: call.lineno)


def _call_with(
    call: ast.Call, namespace: dict[str, Any], args: SimpleNamespace, tokenizer: FakeTokenizer
) -> tuple[int, list[Any]]:
    """Run one of the pinned calls, its keyword values evaluated as at run time (keywords only:
    the pinned calls pass everything by name)."""
    scope = {"bench_args": args, "args": args, "tokenizer": tokenizer, "min": min, "max": max}
    kwargs = {
        kw.arg: eval(
            compile(ast.Expression(kw.value), OFFLINE, "eval"), {"__builtins__": {}}, scope
        )  # noqa: S307 (a keyword of the pinned call)
        for kw in call.keywords
        if kw.arg is not None
    }
    if call.args:
        raise ValueError(f"{OFFLINE}:{call.lineno}: positional arguments, not understood")
    return call.lineno, namespace["sample_random_requests"](**kwargs)


# --- pulled images --------------------------------------------------------------------------------


def check_image(backend: str, report: Report, runner: Runner = run_argv) -> None:
    """Entrypoint and Python of a pinned image, if this machine already has it (never pulls)."""
    image = image_of(backend)
    if shutil.which("docker") is None:
        report.add(backend, "image", "-", f"not checked: no docker CLI ({image})")
        return
    try:
        done = runner(
            [
                "docker",
                "image",
                "inspect",
                "--format",
                "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
                image,
            ],
            60,
        )
    except subprocess.TimeoutExpired:
        report.add(backend, "image", "-", f"not checked: docker did not answer ({image})")
        return
    if done.returncode != 0:
        report.add(backend, "image", "-", f"not checked: not pulled here ({image})")
        return
    entrypoint, _, cmd = done.stdout.strip().partition(" ")
    try:
        python = runner(
            ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image,
             "-c", "import sys; print(sys.version.split()[0])"],
            DOCKER_TIMEOUT_S,
        )  # fmt: skip
        version = (
            python.stdout.strip()
            if python.returncode == 0
            else f"no python3 ({python.stderr.strip()[-80:]})"
        )
    except subprocess.TimeoutExpired:
        version = "python3 did not answer"
    report.add(
        backend, "image", "seen", f"{image}: ENTRYPOINT {entrypoint} CMD {cmd}; python3 {version}"
    )


# --- the whole check ------------------------------------------------------------------------------


def check_all(
    cache: Path = CACHE,
    offline: bool = False,
    images: bool = True,
    runner: Runner = run_argv,
    today: datetime.date | None = None,
) -> Report:
    """Every engine: fetch its release, check every shipped option, SGLang's data path, images."""
    report = Report()
    day = (today or datetime.datetime.now(datetime.timezone.utc).date()).isoformat()
    report.note(
        f"make check-engines, {day}: the shipped engine commands' options in the pinned sources"
    )
    commands = shipped_commands()
    own = FolderSource(ROOT, "this checkout")
    for label, engine in ENGINES.items():
        mine = commands_of(engine, commands)
        origins = ", ".join(c.origin for c in mine)
        image = image_of(engine.image_backend)
        release: Source | None = None
        if engine.distribution is None:
            report.note(f"\n{label}: llem's own script, from this checkout; commands: {origins}")
        else:
            version = pinned_version(engine)
            if version is None:
                report.failed += 1
                report.note(f"\n{label}: FAILED: no version in the image tag {image!r}")
                continue
            fetched = fetch_release(engine, version, cache, offline, runner)
            release = fetched.source
            if release is None:
                if engine.image_backend not in report.not_checked:
                    report.not_checked.append(engine.image_backend)
                report.note(f"\n{label} {version} ({image}): not checked: no source reachable")
                for attempt in fetched.tried:
                    report.note(f"  tried {attempt}")
            else:
                report.note(f"\n{label} {version} ({image}): {release.label}; commands: {origins}")
        check_engine(engine, mine, release, own, report)
        sglang_client = engine.backend in ("sglang", "sglang-serve") and engine.part == "command"
        if sglang_client and release is not None:
            for command in {c.argv: c for c in mine}.values():
                for workload in shipped_workloads(backend=engine.backend):
                    check_sglang_data(release, command, workload, report, label=label)
        if images and engine.image is None:  # a serving backend runs on its engine's image
            check_image(label, report, runner)
    summary = f"\nresult: {report.found} found, {report.missing} missing, {report.failed} failed"
    if report.not_checked:
        summary += "; not checked (no source reachable): " + ", ".join(report.not_checked)
    report.note(summary)
    return report


def update_doc(path: Path, lines: Sequence[str]) -> None:
    """Replace the text between the doc's markers with the output, as a code block."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {DOC_BEGIN} ... {DOC_END} markers")
    block = "\n```text\n" + "\n".join(lines).strip("\n") + "\n```\n"
    path.write_text(text[: start + len(DOC_BEGIN)] + block + text[end:], encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, check, print; exit 1 on anything missing or failed."""
    parser = argparse.ArgumentParser(prog="check_engines.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help="where releases are kept (default: %(default)s)"
    )
    parser.add_argument("--offline", action="store_true", help="use only what the cache holds")
    parser.add_argument("--no-images", action="store_true", help="do not look at pulled images")
    parser.add_argument(
        "--require-all", action="store_true", help="exit 3 when an engine could not be checked"
    )
    parser.add_argument(
        "--update-doc", type=Path, help="write the output between this file's markers"
    )
    options = parser.parse_args(argv)
    report = check_all(options.cache, options.offline, not options.no_images)
    print("\n".join(report.lines))
    if options.update_doc:
        update_doc(options.update_doc, report.lines)
    if report.missing or report.failed:
        return 1
    return 3 if options.require_all and report.not_checked else 0


if __name__ == "__main__":
    sys.exit(main())
