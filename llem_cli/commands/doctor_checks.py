"""Each check is one function returning a :class:`Check`; the command only lists them.

Checks never raise for an expected problem: a missing docker, a dead daemon, no
GPU, an invalid campaign are answers, not crashes. Every subprocess is an argv
with a timeout. A check's ``scope`` says what a failure is about: the machine
(``environment``, exit 3) or the campaign file and its compose files (``campaign``,
exit 2).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llem_cli.docker.compose import ComposeCLI, discover_compose
from llem_cli.docker.docker_cli import DockerCLI, docker_argv
from llem_cli.docker.proc import Result, SubprocessRunner
from llem_cli.errors import LlemError

OK, WARN, FAIL = "ok", "warn", "fail"
ENVIRONMENT, CAMPAIGN = "environment", "campaign"


@dataclass
class Check:
    """One line of the report: what was checked, its status, what was found, how to fix."""

    name: str
    status: str
    detail: str
    fix: str | None = None
    scope: str = ENVIRONMENT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _run(argv: list[str], timeout: float = 30) -> Result | None:
    try:
        return SubprocessRunner().run(argv, timeout=timeout, check=False)
    except LlemError:
        return None


def check_docker_cli() -> Check:
    """The docker client is on PATH and answers ``--version``."""
    docker = docker_argv()
    if shutil.which(docker[0]) is None:
        return Check(
            "docker CLI",
            FAIL,
            f"'{docker[0]}' not found on PATH",
            "install Docker Engine (https://docs.docker.com/engine/install/)",
        )
    result = _run(DockerCLI(docker).client_version())
    if result is None or not result.ok:
        return Check("docker CLI", FAIL, "docker --version failed", "reinstall the docker CLI")
    return Check("docker CLI", OK, result.stdout.strip())


def check_compose() -> tuple[Check, ComposeCLI | None]:
    """Compose v2 (plugin or standalone) is found; v1 works but is legacy."""
    try:
        compose = discover_compose()
    except LlemError as exc:
        return Check("compose", FAIL, exc.message, exc.hint), None
    if compose.is_v1:
        return (
            Check(
                "compose",
                WARN,
                f"{compose.describe()} (v1, legacy)",
                "install the Compose v2 plugin (docker-compose-plugin)",
            ),
            compose,
        )
    return Check("compose", OK, compose.describe()), compose


def check_daemon() -> tuple[Check, dict[str, Any] | None]:
    """The daemon answers; returns ``docker info`` as JSON for the runtime check."""
    result = _run(DockerCLI.from_env().info_json())
    if result is None or not result.ok:
        tail = (result.stderr_tail.strip().splitlines() or ["no answer"])[-1] if result else ""
        return (
            Check(
                "docker daemon",
                FAIL,
                f"not reachable: {tail}",
                "start it: sudo systemctl start docker (or scripts/engine.sh here)",
            ),
            None,
        )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    version = info.get("ServerVersion", "unknown")
    cgroup = info.get("CgroupVersion")
    extra = f", cgroup v{cgroup}" if cgroup else ""
    return Check("docker daemon", OK, f"reachable, engine {version}{extra}"), info


def check_nvidia_runtime(info: dict[str, Any] | None) -> Check:
    """The NVIDIA runtime or CDI devices are registered, so containers can see GPUs."""
    if info is None:
        return Check("NVIDIA runtime", WARN, "unknown (daemon not reachable)")
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    devices = [d.get("ID", "") for d in info.get("DiscoveredDevices") or [] if isinstance(d, dict)]
    cdi = [d for d in devices if "nvidia" in d]
    if "nvidia" in runtimes:
        return Check("NVIDIA runtime", OK, f"runtimes: {', '.join(runtimes)}")
    if cdi:
        return Check("NVIDIA runtime", OK, f"CDI devices: {', '.join(cdi)}")
    return Check(
        "NVIDIA runtime",
        WARN,
        f"no nvidia runtime or CDI device registered (runtimes: {', '.join(runtimes) or 'none'}); "
        "containers will not see GPUs",
        "install the NVIDIA Container Toolkit and run: sudo nvidia-ctk runtime configure "
        "--runtime=docker && sudo systemctl restart docker",
    )


def check_host_gpus() -> tuple[Check, dict[str, Any]]:
    """Host GPUs through NVML: what will and will not be measured."""
    from llem_cli.telemetry import describe_gpus

    report = describe_gpus()
    lines = report.lines()
    if not report.gpus:
        return (
            Check(
                "host GPUs",
                WARN,
                "; ".join(lines),
                "install the NVIDIA driver on the host to measure energy",
            ),
            report.to_dict(),
        )
    return Check("host GPUs", OK, "; ".join(lines)), report.to_dict()


def check_gpu_settings() -> Check:
    """Whether llem may change the host GPUs' settings (``gpu_settings``), and any GPU a
    stopped run left changed (restored now: the doctor is one of the places that do it)."""
    from llem_cli.runner.gpu_settings_run import restore_left_changed
    from llem_cli.telemetry import open_gpus
    from llem_cli.telemetry.gpu_settings import PERMISSION_HINT, SettingsControl
    from llem_cli.telemetry.settings_state import StateFile

    try:
        restored = restore_left_changed()
        left = StateFile().entries()
    except LlemError as exc:
        return Check("GPU settings", FAIL, exc.one_line(), "set LLEM_STATE_DIR or fix the file")
    notes = [*restored]
    alive = [e for e in left if e.owner.alive()]
    if alive:
        notes.append(f"{len(alive)} GPU(s) changed by a running llem (restored when it ends)")
    gpus = open_gpus()
    try:
        if not gpus.gpus:
            return Check("GPU settings", WARN, "; ".join([*notes, "no host GPU"]) or "no host GPU")
        problem = SettingsControl(gpus).permission_problem(sorted(gpus.gpus))
    finally:
        gpus.close()
    if problem:
        detail = "; ".join([*notes, "gpu_settings cannot be applied: " + problem])
        return Check("GPU settings", WARN, detail, PERMISSION_HINT)
    return Check("GPU settings", OK, "; ".join([*notes, "llem may change power limits and clocks"]))


def check_campaign(path: Path, compose: ComposeCLI | None) -> list[Check]:
    """For a campaign: valid, its compose files accepted by Compose, each backend's service
    there, its image present locally, and whether it reserves GPUs."""
    from llem_cli.campaign.load import load_campaign
    from llem_cli.docker.compose import ComposeProject
    from llem_cli.errors import CampaignInvalid

    try:
        loaded = load_campaign(path)
    except CampaignInvalid as exc:
        errors = [line for line in exc.problems if ": warning: " not in line] or [exc.message]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return [
            Check(
                "campaign",
                FAIL,
                f"invalid: {errors[0]}{more}",
                f"llem validate {path} lists every problem",
                scope=CAMPAIGN,
            )
        ]
    checks = [Check("campaign", OK, f"{path}: valid", scope=CAMPAIGN)]
    if compose is None:
        return checks
    project = ComposeProject(
        compose, loaded.campaign.project_name, tuple(loaded.compose_paths()), override=None
    )
    result = _run([*project.config(), "--format", "json"], timeout=60)
    if result is None or not result.ok:
        tail = (result.stderr_tail.strip().splitlines() or ["?"])[-1] if result else "?"
        return [
            *checks,
            Check(
                "compose file",
                FAIL,
                f"docker compose config failed: {tail}",
                "fix the compose file (docker compose config shows the error)",
                scope=CAMPAIGN,
            ),
        ]
    services = json.loads(result.stdout).get("services", {})
    for name in loaded.campaign.backends:
        service = loaded.campaign.service_of(name)
        spec = services.get(service)
        if spec is None:
            checks.append(
                Check(
                    f"backend {name}",
                    FAIL,
                    f"service '{service}' not in the compose file",
                    f"add it, or set backends.{name}.service",
                    scope=CAMPAIGN,
                )
            )
            continue
        checks.append(_image_check(name, spec.get("image")))
        checks.append(_gpu_reservation_check(name, spec))
    return checks


def _image_check(backend: str, image: str | None) -> Check:
    if not image:
        return Check(f"backend {backend} image", WARN, "built from a Dockerfile (no image name)")
    result = _run(DockerCLI.from_env().image_id(image))
    if result is not None and result.ok:
        return Check(f"backend {backend} image", OK, f"{image} present locally")
    return Check(
        f"backend {backend} image", WARN, f"{image} not present locally", f"docker pull {image}"
    )


def _gpu_reservation_check(backend: str, spec: dict[str, Any]) -> Check:
    devices = (((spec.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    gpu = [d for d in devices if "gpu" in (d.get("capabilities") or [])]
    if gpu or spec.get("gpus") or spec.get("runtime") == "nvidia":
        return Check(f"backend {backend} GPUs", OK, "the service reserves GPUs", scope=CAMPAIGN)
    return Check(
        f"backend {backend} GPUs",
        WARN,
        "the service reserves no GPU: nvidia-smi inside it will fail",
        "add deploy.resources.reservations.devices: [{driver: nvidia, count: all, "
        "capabilities: [gpu, utility]}]",
        scope=CAMPAIGN,
    )
