"""``llem init``: write a commented starting campaign, and its compose file when needed.

Whatever init writes must pass ``llem validate`` as written, so every check that could make it
invalid happens before the first byte is written: known backends (Click restricts them) and
files that would be overwritten (refused without ``--force``). Nothing is written when any
check fails.

``--serve`` writes a serving campaign instead: each chosen engine's server (``serve``), the check
that it is up (``ready``) and its serving benchmark as the experiments' client; an engine without
a server (pytorch) is refused before anything is written.

Every backend needs a compose file. ``--compose`` writes one beside the campaign
(``<stem>.compose.yml``, plus the scripts it mounts). Without it, init uses
``compose/<backend>.yml`` found beside or above the campaign (this repository's layout) and,
when there is none (a ``pip install llem`` has no ``compose/`` folder), writes the same files
``--compose`` would, rather than leave the user a campaign that cannot run. The texts all come
from the package data in :mod:`llem_cli.templates`, so this works from any install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llem_cli.atomic import atomic_write_text
from llem_cli.errors import EXIT_OK, UsageProblem
from llem_cli.output import Output
from llem_cli.templates import (
    BACKENDS,
    SERVING,
    campaign_name,
    render_campaign,
    render_compose,
    render_serving_campaign,
    script_text,
    scripts_for,
)

DEFAULT_BACKENDS = ("pytorch",)
"""One engine, the simplest stack: a starting point, not a comparison."""

DEFAULT_SERVING = ("vllm",)
"""``--serve`` without ``--backend``: the default engine has no server, vLLM's is the common one."""


@dataclass(frozen=True)
class PlannedFile:
    """A file init intends to write, and its content.

    ``shared`` files (the helper scripts) may already be there from an earlier init in the
    same folder: only a different content counts as an overwrite for them.
    """

    path: Path
    text: str
    shared: bool = False


def init_campaign(
    path: Path,
    *,
    backends: tuple[str, ...],
    model: str,
    with_compose: bool,
    force: bool,
    out: Output,
    serve: bool = False,
) -> int:
    """Plan every file, check them all, then write them; exit 0 or raise UsageProblem (2).

    With ``serve`` each engine becomes a serving backend (``<engine>-serve``: its server, its
    ready check, its serving benchmark as the client) on the engine's own compose service.
    """
    default = DEFAULT_SERVING if serve else DEFAULT_BACKENDS
    chosen = list(dict.fromkeys(backends or default))  # order kept, repeats dropped
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:  # Click's Choice catches this first; kept for callers that bypass the CLI
        raise UsageProblem(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
    serverless = [b for b in chosen if serve and b not in SERVING]
    if serverless:
        raise UsageProblem(
            f"--serve: {serverless[0]} has no server to run (engines with one: "
            f"{', '.join(SERVING)})",
            hint=f"drop --serve for {serverless[0]}'s offline benchmark, or choose "
            + " / ".join(f"--backend {name}" for name in SERVING),
        )
    folder = path.parent
    compose_path = folder / f"{path.stem}.compose.yml"
    found = None if with_compose else _existing_compose(folder, chosen)
    refs = [compose_path.name] if found is None else found
    render = render_serving_campaign if serve else render_campaign
    text = render(campaign_name(path.stem), chosen, model, refs, str(path))
    files = [PlannedFile(path, text)]
    if found is None:  # asked for, or nothing to use: write it (a pip install has no compose/)
        files.append(PlannedFile(compose_path, render_compose(chosen)))
        used = [SERVING[b].name for b in chosen] if serve else chosen
        files.extend(
            PlannedFile(folder / "scripts" / name, script_text(name), shared=True)
            for name in scripts_for(used)
        )
    _refuse_overwrites(files, force)
    if found is None and not with_compose:  # say why files nobody asked for appear
        wanted = ", ".join(f"compose/{name}.yml" for name in chosen)
        out.info(f"no {wanted} beside or above {path}: writing {compose_path.name} beside it")
    for planned in files:
        if planned.shared and _read(planned.path) == planned.text:
            out.line(f"kept {planned.path} (unchanged)")
            continue
        _write(planned)
        out.line(f"wrote {planned.path}")
    out.info(f"next: llem validate {path} && llem doctor {path} && llem plan {path}")
    return EXIT_OK


def _existing_compose(folder: Path, backends: list[str]) -> list[str] | None:
    """Paths (relative to ``folder``) of ``compose/<backend>.yml`` beside or above it.

    ``None`` unless one ``compose/`` folder has a file for every backend: a campaign mixing
    found and written compose files would be harder to follow than one written file.
    """
    here = folder.resolve()
    for place in dict.fromkeys([here / "compose", here.parent / "compose"]):
        candidates = [place / f"{name}.yml" for name in backends]
        if all(c.is_file() for c in candidates):
            return [Path(os.path.relpath(c, here)).as_posix() for c in candidates]
    return None


def _refuse_overwrites(files: list[PlannedFile], force: bool) -> None:
    """Without --force, any existing file that would change stops init before it writes."""
    if force:
        return
    clashes = [
        f.path for f in files if f.path.exists() and not (f.shared and _read(f.path) == f.text)
    ]
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageProblem(f"{clashes[0]} already exists{more}", hint="use --force to overwrite")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _write(planned: PlannedFile) -> None:
    """Write atomically: an interrupted init never leaves half a file."""
    try:
        planned.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(planned.path, planned.text)
    except OSError as exc:
        raise UsageProblem(f"cannot write {planned.path}: {exc.strerror or exc}") from exc
