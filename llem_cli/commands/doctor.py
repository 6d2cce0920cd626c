"""``llem doctor``: what works, what does not, and how to fix it (exit 0, or 3)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llem_cli.doctor.checks import (
    FAIL,
    OK,
    WARN,
    Check,
    check_campaign,
    check_compose,
    check_daemon,
    check_docker_cli,
    check_host_gpus,
    check_nvidia_runtime,
)
from llem_cli.errors import EXIT_ENVIRONMENT, EXIT_OK
from llem_cli.output import Output

_MARK = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}
_COLOUR = {OK: "green", WARN: "yellow", FAIL: "red"}


def run_doctor(campaign: Path | None, *, as_json: bool, out: Output) -> int:
    """Run every check; exit 3 when docker, compose or the daemon fails."""
    checks: list[Check] = [check_docker_cli()]
    compose_check, compose = check_compose()
    daemon_check, info = check_daemon()
    checks += [compose_check, daemon_check, check_nvidia_runtime(info)]
    gpu_check, gpus = check_host_gpus()
    checks.append(gpu_check)
    if campaign is not None:
        checks += check_campaign(campaign, compose if daemon_check.status == OK else None)
    environment_failed = any(c.status == FAIL for c in (checks[0], compose_check, daemon_check))
    if as_json:
        click.echo(json.dumps({"checks": [c.to_dict() for c in checks], "gpus": gpus}, indent=2))
    else:
        for check in checks:
            mark = _MARK[check.status]
            if out.color:
                mark = click.style(mark, fg=_COLOUR[check.status], bold=True)
            click.echo(f"{mark} {check.name}: {check.detail}")
            if check.fix and check.status != OK:
                click.echo(f"     fix: {check.fix}")
    return EXIT_ENVIRONMENT if environment_failed else EXIT_OK
