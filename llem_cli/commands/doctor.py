"""``llem doctor``: what works, what does not, and how to fix it.

Exit codes (docs/design.md §3.2):
0 nothing failed (warnings allowed); 2 the campaign FILE is invalid,
its compose files are refused by Compose or lack a backend's service; 3 docker, compose or
the daemon is missing or unreachable. When both kinds fail, 2: ``llem run FILE`` would stop
there first. A missing image or NVIDIA runtime is a warning (``up`` pulls an image; GPUs can
work without a registered runtime), so exit 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from llem_cli.commands.doctor_checks import (
    CAMPAIGN,
    FAIL,
    OK,
    WARN,
    Check,
    check_campaign,
    check_compose,
    check_daemon,
    check_docker_cli,
    check_gpu_settings,
    check_host_gpus,
    check_nvidia_runtime,
)
from llem_cli.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE
from llem_cli.output import Output

_MARK = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}
_COLOUR = {OK: "green", WARN: "yellow", FAIL: "red"}


def exit_code(checks: list[Check]) -> int:
    """2 when a campaign check failed, else 3 when an environment check failed, else 0."""
    failed = [c for c in checks if c.status == FAIL]
    if any(c.scope == CAMPAIGN for c in failed):
        return EXIT_USAGE
    return EXIT_ENVIRONMENT if failed else EXIT_OK


def run_doctor(campaign: Path | None, *, as_json: bool, out: Output) -> int:
    """Run every check and print them; the exit code as the module docstring says."""
    checks: list[Check] = [check_docker_cli()]
    compose_check, compose = check_compose()
    daemon_check, info = check_daemon()
    checks += [compose_check, daemon_check, check_nvidia_runtime(info)]
    gpu_check, gpus = check_host_gpus()
    checks += [gpu_check, check_gpu_settings()]
    if campaign is not None:
        checks += check_campaign(campaign, compose if daemon_check.status == OK else None)
    code = exit_code(checks)
    if as_json:
        report = {"checks": [c.to_dict() for c in checks], "gpus": gpus, "exit_code": code}
        click.echo(json.dumps(report, indent=2))
    else:
        for check in checks:
            mark = _MARK[check.status]
            if out.color:
                mark = click.style(mark, fg=_COLOUR[check.status], bold=True)
            click.echo(f"{mark} {check.name}: {check.detail}")
            if check.fix and check.status != OK:
                click.echo(f"     fix: {check.fix}")
    return code
