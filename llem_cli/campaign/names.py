"""Names a campaign fixes that the rest of llem uses without loading the campaign model.

Kept apart from :mod:`llem_cli.campaign.model` because that module imports pydantic (about
10 MiB and a tenth of a second): ``llem results`` and ``llem status`` need these names, not the
model, and a run of 100k records should not pay for it (bench/bench_against_revision.py).
"""

from __future__ import annotations

#: llem's normalized metric names (docs/design.md §3.3), in the order tables and CSV columns
#: show them: the only keys ``backends.<name>.metrics`` accepts
METRIC_NAMES = (
    "output_tokens",
    "input_tokens",
    "output_tokens_per_s",
    "requests_per_s",
    "ttft_ms",
    "itl_ms",
)


def default_project(name: str) -> str:
    """The compose project of a campaign that names none: ``llem-<name>`` (the one spelling)."""
    return f"llem-{name}"
