"""Docker and Compose by subprocess: the compose driver, the GPU probe and the ContainerManager.

Import from here; the submodules each do one job (see their docstrings).
"""

from llem_cli.docker.compose import ComposeCLI, ComposeProject, discover_compose, parse_ps_json
from llem_cli.docker.contract import container_experiment_dir, experiment_env
from llem_cli.docker.manager import ContainerManager, StartFailed, Timeouts
from llem_cli.docker.outcome import ContainerState, ExecOutcome, classify
from llem_cli.docker.override import render_override, write_override
from llem_cli.docker.probe import GpuStatus, ProbeResult
from llem_cli.docker.proc import (
    CommandFailed,
    DryRunRunner,
    Result,
    Runner,
    SubprocessRunner,
    redact_argv,
)
from llem_cli.docker.sweep import teardown_by_label
from llem_cli.signals import SignalReceived, deferred, handle_signals

__all__ = [
    "CommandFailed",
    "ComposeCLI",
    "ComposeProject",
    "ContainerManager",
    "ContainerState",
    "DryRunRunner",
    "ExecOutcome",
    "GpuStatus",
    "ProbeResult",
    "Result",
    "Runner",
    "SignalReceived",
    "StartFailed",
    "SubprocessRunner",
    "Timeouts",
    "classify",
    "container_experiment_dir",
    "deferred",
    "discover_compose",
    "experiment_env",
    "handle_signals",
    "parse_ps_json",
    "redact_argv",
    "render_override",
    "teardown_by_label",
    "write_override",
]
