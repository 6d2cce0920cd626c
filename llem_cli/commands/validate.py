"""``llem validate``: every problem of every file, one line each."""

from __future__ import annotations

from pathlib import Path

from llem_cli.campaign.load import check_file
from llem_cli.errors import EXIT_OK, EXIT_USAGE
from llem_cli.output import Output


def validate_files(files: list[Path], out: Output) -> int:
    """Check each file; print problems on stdout and a summary per valid file."""
    invalid = 0
    for path in files:
        loaded, problems = check_file(path)
        for problem in problems:
            out.line(problem.render())
        if loaded is None:
            invalid += 1
            continue
        configs = loaded.configs
        backends = len({c.backend for c in configs})
        experiments = len(configs) * loaded.campaign.execution.cycles
        out.line(
            f"{path}: valid: {len(configs)} configurations, {experiments} experiments, "
            f"{backends} backend{'s' if backends != 1 else ''}"
        )
    return EXIT_USAGE if invalid else EXIT_OK
