"""``llem init``: write a commented starting campaign (and, if asked, its compose file).

Whatever init writes must pass ``llem validate`` as written, so every check that could make it
invalid happens before the first byte is written: known backends (Click restricts them), files
that would be overwritten (refused without ``--force``), and a compose file for every backend
(written with ``--compose``, else found in a ``compose/`` folder beside or above the campaign,
as in this repository's layout). Nothing is written when any check fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llem_cli.errors import EXIT_OK, UsageProblem
from llem_cli.init_templates import (
    BACKENDS,
    campaign_name,
    render_campaign,
    render_compose,
    script_source,
    scripts_for,
)
from llem_cli.output import Output

DEFAULT_BACKENDS = ("pytorch",)
"""One engine, the simplest stack: a starting point, not a comparison."""


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
) -> int:
    """Plan every file, check them all, then write them; exit 0 or raise UsageProblem (2)."""
    chosen = list(dict.fromkeys(backends or DEFAULT_BACKENDS))  # order kept, repeats dropped
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:  # Click's Choice catches this first; kept for callers that bypass the CLI
        raise UsageProblem(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
    folder = path.parent
    files: list[PlannedFile] = []
    if with_compose:
        compose_path = folder / f"{path.stem}.compose.yml"
        files.append(PlannedFile(compose_path, render_compose(chosen)))
        files.extend(
            PlannedFile(folder / "scripts" / name, script_source(name), shared=True)
            for name in scripts_for(chosen)
        )
        compose_refs = [compose_path.name]
    else:
        compose_refs = _existing_compose(folder, chosen)
    text = render_campaign(campaign_name(path.stem), chosen, model, compose_refs, str(path))
    files.insert(0, PlannedFile(path, text))
    _refuse_overwrites(files, force)
    for planned in files:
        if planned.shared and _read(planned.path) == planned.text:
            out.line(f"kept {planned.path} (unchanged)")
            continue
        _write(planned)
        out.line(f"wrote {planned.path}")
    out.info(f"next: llem validate {path} && llem doctor {path} && llem plan {path}")
    return EXIT_OK


def _existing_compose(folder: Path, backends: list[str]) -> list[str]:
    """Paths (relative to ``folder``) of ``compose/<backend>.yml`` beside or above it."""
    here = folder.resolve()
    places = list(dict.fromkeys([here / "compose", here.parent / "compose"]))
    for place in places:
        candidates = [place / f"{name}.yml" for name in backends]
        if all(c.is_file() for c in candidates):
            return [Path(os.path.relpath(c, here)).as_posix() for c in candidates]
    wanted = ", ".join(f"{name}.yml" for name in backends)
    raise UsageProblem(
        f"no compose file for the campaign: {wanted} not all in {' or '.join(map(str, places))}",
        hint="add --compose to write one next to the campaign",
    )


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
    """Write through a temporary name: an interrupted init never leaves half a file."""
    planned.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = planned.path.with_name(f".{planned.path.name}.llem-init.tmp")
    try:
        tmp.write_text(planned.text, encoding="utf-8")
        os.replace(tmp, planned.path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageProblem(f"cannot write {planned.path}: {exc.strerror or exc}") from exc
