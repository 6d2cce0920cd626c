"""A unique compose project and run directory for the ContainerManager tests.

Tests run next to other engineers' containers, so every project and run id is new; whatever a
test started is removed afterwards by label and project (:func:`cleanup_spec`). The compose
files come from the harness (:data:`COMPOSE_DIR`, ``basic.yml``: services ``app``, ``mem``
with a 32 MiB limit, and ``broken``, which exits at once).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from llem_testkit import COMPOSE_DIR

__all__ = ["COMPOSE_DIR", "RunSpec", "cleanup_spec", "new_spec"]


@dataclass
class RunSpec:
    """One test run's names and places; cleaned up by label and project after the test."""

    project: str
    run_id: str
    run_dir: Path
    files: list[Path] = field(default_factory=lambda: [COMPOSE_DIR / "basic.yml"])


def new_spec(base: Path) -> RunSpec:
    """Unique project/run names (tests run next to other engineers' containers)."""
    tag = uuid.uuid4().hex[:8]
    run_dir = base / f"run-{tag}"
    run_dir.mkdir(parents=True)
    return RunSpec(project=f"llemt-{tag}", run_id=f"t{tag}", run_dir=run_dir)


def cleanup_spec(spec: RunSpec) -> None:
    """Remove every container of the spec's run and project; a failure is printed, not raised."""
    from llem_cli.docker.sweep import teardown_by_label

    try:
        teardown_by_label(run_id=spec.run_id, project=spec.project)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own result
        print(f"cleanup of {spec.project} failed: {exc}")
