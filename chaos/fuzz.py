"""Scenario 5: generated malformed campaign files never crash ``llem validate`` / ``llem plan``.

Hypothesis generates five kinds of file: random YAML documents (random scalars, lists, mappings,
unicode, huge numbers, NaN), raw random text and bytes, deep nesting, structural mutations of the
valid campaigns under ``campaigns/`` (keys deleted, values replaced by wrong types, random strings,
huge numbers, unknown keys, nesting), and text mutations of their YAML (lines dropped, duplicated,
characters inserted). Each goes through ``llem validate`` in-process (click's CliRunner); every
fifth also through ``llem plan --json``; then a few hundred through real ``python -m llem_cli``
subprocesses. A case passes when the exit code is 0 or 2, no output holds "Traceback", and no
exception other than SystemExit escaped the command (none swallowed as a bare exit 1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from chaos.common import REPO, Row, log
from llem_cli.cli import cli

NAME = "malformed campaigns (hypothesis)"
KINDS = ("yaml", "raw", "deep", "mutation", "text")

# ---- what the files are made of ----------------------------------------------------------------

FIELD_NAMES = [
    "name",
    "compose",
    "project",
    "backends",
    "service",
    "command",
    "gpus",
    "env",
    "keepalive",
    "grid",
    "backend",
    "per_backend",
    "experiments",
    "exclude",
    "execution",
    "cycles",
    "order",
    "seed",
    "timeout",
    "retries",
    "gap",
    "cycle_gap",
    "thermal",
    "max_temp_c",
    "max_wait",
    "idle_baseline",
    "health",
    "probe",
    "every",
    "max_memory_used_pct",
    "max_restarts",
    "restart_backoff",
    "results",
    "prune_on_oom",
    "batch_size",
    "model",
]
huge_ints = st.sampled_from([2**63, -(2**63) - 1, 10**100, 2**31, -1, 0, 10**4000])
weird_text = st.sampled_from(
    [
        "",
        " ",
        "{",
        "}",
        "{x}",
        "{{x}}",
        "${HOME}",
        "90s",
        "1h30m",
        "-5m",
        "1e309",
        "nan",
        "~",
        "null",
        "yes",
        "no",
        "on",
        "0x1F",
        "0o17",
        ".inf",
        "é",
        "\u202e",
        "\x00",
        "\ud7ff",
        "😀" * 50,
        "a" * 5000,
        "../../etc/passwd",
        "C:\\x",
        "llem-ok",
        "Invalid Name",
        "--flag",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    weird_text,
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12), st.integers(), st.booleans())


def _nest(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    )


values = st.recursive(scalars, _nest, max_leaves=25)


def dump(doc: Any) -> bytes:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8", "replace")
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
        return repr(doc).encode("utf-8", "replace")


def valid_bases() -> list[tuple[dict[str, Any], str]]:
    """The repository's example campaigns with ``compose`` made absolute (documents, text)."""
    out = []
    for path in sorted((REPO / "campaigns").glob("*.yaml")):
        text = path.read_text()
        doc = yaml.safe_load(text)
        compose = doc.get("compose")
        files = compose if isinstance(compose, list) else [compose]
        absolute = [str((path.parent / f).resolve()) for f in files]
        doc["compose"] = absolute if isinstance(compose, list) else absolute[0]
        doc.pop("results", None)
        out.append((doc, yaml.safe_dump(doc, sort_keys=False)))
    return out


BASES = valid_bases()


@st.composite
def yaml_doc(draw: st.DrawFn) -> bytes:
    return dump(draw(st.one_of(values, st.dictionaries(keys, values, max_size=8))))


@st.composite
def raw(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=10, max_value=20_000))
    style = draw(st.sampled_from(["flow-list", "flow-map", "block", "anchors", "in-campaign"]))
    if style == "flow-list":
        return b"[" * depth + b"]" * depth
    if style == "flow-map":
        return b"{a: " * depth + b"1" + b"}" * depth
    if style == "block":
        depth = min(depth, 2000)
        return "".join(f"{' ' * i}k{i}:\n" for i in range(depth)).encode()
    if style == "anchors":  # a billion laughs, small
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for i in range(1, min(depth, 12)):
            lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
        return "\n".join(lines).encode()
    doc, _ = draw(st.sampled_from(BASES))
    doc = dict(doc)
    doc["grid"] = {"x": [1] * 1 + [[[[[[[[1]]]]]]]] * 3}
    nested: Any = 1
    for _ in range(min(depth, 400)):
        nested = [nested]
    doc[draw(st.sampled_from(list(doc)))] = nested
    return dump(doc)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutation(draw: st.DrawFn) -> bytes:
    base, _ = draw(st.sampled_from(BASES))
    doc = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _get(doc, path[:-1])
        last = path[-1]
        op = draw(st.sampled_from(["delete", "replace", "add", "nest", "huge", "string"]))
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        elif op == "nest":
            parent[last] = {"x": [parent[last]]} if draw(st.booleans()) else [parent[last]]
        elif op == "huge":
            parent[last] = draw(huge_ints)
        else:
            parent[last] = draw(st.one_of(st.text(max_size=40), weird_text))
    return dump(doc)


@st.composite
def text_mutation(draw: st.DrawFn) -> bytes:
    _, text = draw(st.sampled_from(BASES))
    lines = text.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        if not lines:
            break
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "insert", "indent", "cut"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "insert":
            j = draw(st.integers(min_value=0, max_value=len(lines[i])))
            junk = draw(
                st.one_of(
                    st.sampled_from(
                        [
                            ":",
                            "- ",
                            "{",
                            "[",
                            "'",
                            '"',
                            "&a",
                            "*a",
                            "!!python/object:os.system",
                            "\t",
                            "#",
                        ]
                    ),
                    st.text(max_size=5),
                )
            )
            lines[i] = lines[i][:j] + junk + lines[i][j:]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(min_value=1, max_value=7)) + lines[i]
        else:
            lines[i] = lines[i][: draw(st.integers(min_value=0, max_value=len(lines[i])))]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


STRATEGIES = {
    "yaml": yaml_doc(),
    "raw": raw(),
    "deep": deep(),
    "mutation": mutation(),
    "text": text_mutation(),
}
#: cases of each kind through in-process validate (sums to 2,000)
COUNTS = {"yaml": 450, "raw": 200, "deep": 100, "mutation": 850, "text": 400}


# ---- checking one file --------------------------------------------------------------------------


def verdict(code: int | None, output: str, exc: BaseException | None) -> str | None:
    """Why a run is a failure (None: it passed)."""
    if "Traceback" in output:
        return f"traceback in the output (exit {code})"
    if exc is not None and not isinstance(exc, SystemExit):
        return f"exception escaped: {type(exc).__name__}: {exc}"
    if code not in (0, 2):
        last = output.strip().splitlines()[-1:] or [""]
        return f"exit {code}: {last[0][:300]}"
    return None


CASE_TIMEOUT_S = 20.0


class CaseTimeout(Exception):
    """A command ran longer than CASE_TIMEOUT_S on one file."""


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout(f"no answer within {CASE_TIMEOUT_S:g}s (a hang)")


class Checker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runner = CliRunner()
        self.counts = {"validate": 0, "plan": 0, "subprocess": 0}
        self.failures: list[str] = []
        self.n = 0
        signal.signal(signal.SIGALRM, _alarm)

    def write(self, data: bytes) -> Path:
        self.n += 1
        path = self.folder / f"c{self.n % 50}.yaml"
        path.write_bytes(data)
        return path

    def inprocess(self, data: bytes, *, also_plan: bool) -> None:
        path = self.write(data)
        commands = [["validate", str(path)]]
        if also_plan:
            commands.append(["plan", str(path), "--json"])
        for args in commands:
            # a hang is a failure too: SIGALRM raises inside the command after CASE_TIMEOUT_S
            signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
            try:
                result = self.runner.invoke(cli, args, catch_exceptions=True)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self.counts[args[0]] += 1
            why = verdict(result.exit_code, result.output, result.exception)
            if why:
                raise AssertionError(f"llem {args[0]}: {why}")

    def subprocess(self, data: bytes, command: str) -> None:
        path = self.write(data)
        env = {**os.environ, "NO_COLOR": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "llem_cli", command, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
        )
        self.counts["subprocess"] += 1
        why = verdict(done.returncode, done.stdout + done.stderr, None)
        if why:
            raise AssertionError(f"python -m llem_cli {command}: {why}")


def hypothesis_run(check: Any, strategy: st.SearchStrategy[bytes], n: int, rng_seed: int) -> str:
    """Run ``check`` over ``n`` generated files; '' or the (shrunk) failure."""

    @seed(rng_seed)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(strategy)
    def prop(data: bytes) -> None:
        check(data)

    try:
        prop()
    except Exception as exc:  # noqa: BLE001 - the shrunk failure is the result
        return f"{type(exc).__name__}: {str(exc)[:600]}"
    return ""


def run(quick: bool = False, seed: int = 20261128) -> Row:  # noqa: A002
    scale = 0.25 if quick else 1.0
    row = Row(NAME)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llem-chaos-fuzz-") as tmp:
        checker = Checker(Path(tmp))
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
        for index, kind in enumerate(KINDS):
            n = max(1, int(COUNTS[kind] * scale))
            k = 0

            def check(data: bytes) -> None:
                nonlocal k
                k += 1
                checker.inprocess(data, also_plan=k % 5 == 0)

            failure = hypothesis_run(check, STRATEGIES[kind], n, seed + index)
            if failure:
                row.fail(f"{kind}: {failure}")
            log(f"  {kind}: {k} generated files in-process")
        subprocess_n = int(300 * scale)
        for index, kind in enumerate(KINDS):
            n = max(1, subprocess_n // len(KINDS))
            k = 0

            def check_sub(data: bytes) -> None:
                nonlocal k
                k += 1
                checker.subprocess(data, "plan" if k % 4 == 0 else "validate")

            failure = hypothesis_run(check_sub, STRATEGIES[kind], n, seed + 100 + index)
            if failure:
                row.fail(f"subprocess {kind}: {failure}")
        counts = checker.counts
    row.repeats = counts["validate"] + counts["plan"] + counts["subprocess"]
    row.passed = row.repeats - len(row.failures)
    row.notes.append(
        f"{counts['validate']} validate + {counts['plan']} plan in-process, "
        f"{counts['subprocess']} subprocess runs (validate, every 4th plan); hypothesis seed {seed}"
    )
    row.seconds = time.monotonic() - t0
    log(f"  {row.notes[-1]}")
    return row


if __name__ == "__main__":
    from chaos.run_all import main

    sys.exit(main(["--only", "fuzz", *sys.argv[1:]]))
