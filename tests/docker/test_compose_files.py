"""The shipped compose files (compose/*.yml) through Docker Compose and a real engine.

``docker compose config -q`` needs no image and no GPU. The repository's compose files are
symlinks into the package (``llem_cli/templates/compose``): Compose must read them through the
link and resolve their ``./scripts`` mount to the package's scripts, whether given the link or
the resolved path (llem passes resolved paths). The serving backends (``<engine>-serve``) run on
the same files: Compose must read each with llem's override making the server the main process,
publish nothing, and mount what the server and client name. The vLLM entrypoint reset is checked
against a
real engine with a stand-in image whose ENTRYPOINT would swallow llem's keep-alive, with the
reset removed as the control. The checks that need no engine (the files as text and as data,
the links, the helper scripts) are in tests/unit/test_shipped_templates.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import llem_cli.templates
from llem_cli.templates import BACKENDS, SCRIPTS_MOUNT, SERVING, script_text

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
PACKAGE_COMPOSE = Path(llem_cli.templates.__file__).parent / "compose"
ENGINE_FILES = sorted(COMPOSE / f"{name}.yml" for name in BACKENDS)


def docker(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL if "input" not in kwargs else None,
        **kwargs,  # type: ignore[arg-type]
    )


# --- compose files through Docker Compose --------------------------------------------------


@pytest.mark.parametrize(
    "files",
    [[p] for p in ENGINE_FILES] + [ENGINE_FILES],
    ids=[p.name for p in ENGINE_FILES] + ["all-merged"],
)
def test_compose_config_accepts(files: list[Path]) -> None:
    argv = ["compose"]
    for path in files:
        argv += ["-f", str(path)]
    done = docker(*argv, "config", "-q")
    assert done.returncode == 0, done.stderr


SERVING_SWEEP = ROOT / "campaigns" / "serving-sweep.yaml"


@pytest.mark.parametrize(
    "engines", [[e] for e in SERVING] + [list(SERVING)], ids=[*SERVING, "all-merged"]
)
def test_compose_reads_the_serving_backends_override(engines: list[str], tmp_path: Path) -> None:
    """The serving sweep's servers as llem starts them: each engine's compose file (through the
    repository's link) plus llem's override whose command is the rendered `serve` argv. The
    server is the service's command as given, no port is published, vLLM's entrypoint stays
    reset, and every file under /llem/scripts that the server or client names is mounted."""
    from llem_cli.campaign.load import load_campaign
    from llem_cli.campaign.servers import server_argv
    from llem_cli.docker.override import write_override

    loaded = load_campaign(SERVING_SWEEP)
    argvs = {}
    for engine in engines:
        config = next(c for c in loaded.configs if c.backend == SERVING[engine].name)
        argvs[engine] = server_argv(loaded.campaign, "20261130T000000Z", config)
    override = write_override(
        "20261130T000000Z", tmp_path, dict.fromkeys(engines, False), commands=argvs
    )
    argv = ["compose"]
    for engine in engines:
        argv += ["-f", str(COMPOSE / f"{engine}.yml")]
    done = docker(*argv, "-f", str(override), "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    for engine in engines:
        service = config["services"][engine]
        assert service["command"] == argvs[engine]
        assert "{" not in " ".join(service["command"])  # every placeholder rendered
        assert not service.get("ports")
        if engine == "vllm":
            assert service.get("entrypoint") == []
        mounted = {f"{SCRIPTS_MOUNT}/{name}" for name in SERVING[engine].scripts}
        if mounted:
            source = Path(_scripts_source(config, engine))
            for item in mounted:
                assert (source / Path(item).name).is_file(), item


def _scripts_source(config: dict, service: str) -> str:
    """The host folder Compose bind-mounts at /llem/scripts for ``service``."""
    volumes = config["services"][service]["volumes"]
    (source,) = [v["source"] for v in volumes if v["target"] == "/llem/scripts"]
    return source


@pytest.mark.parametrize("backend", ["pytorch", "tensorrt"])
def test_scripts_mount_resolves_through_the_link_and_the_real_file(backend: str) -> None:
    """Compose does not resolve a linked file: its project folder is compose/, so ./scripts is
    compose/scripts (a link to the package folder). llem passes resolved paths: then ./scripts
    is the package folder itself. Both must be the one folder of scripts."""
    linked = COMPOSE / f"{backend}.yml"
    for path in (linked, linked.resolve()):
        done = docker("compose", "-f", str(path), "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        source = Path(_scripts_source(json.loads(done.stdout), backend))
        assert source == path.parent / "scripts"
        assert source.resolve() == PACKAGE_COMPOSE / "scripts"


@pytest.mark.parametrize("via", ["link", "resolved"])
def test_container_sees_the_scripts_through_the_link(via: str, tmp_path: Path) -> None:
    """The mounted scripts are readable files in the container, not dangling links."""
    tag = uuid.uuid4().hex[:8]
    project, volume = f"llemt-scripts-{tag}", f"llemt-scripts-{tag}-hf"
    standin = tmp_path / "standin.yml"
    standin.write_text(
        "services:\n"
        "  pytorch:\n"
        "    image: llem-test-busybox:latest\n"
        "    network_mode: none\n"
        "    deploy: !reset {}\n"
        "volumes:\n"
        "  hf-cache:\n"
        f"    name: {volume}\n"  # never the user's real llem-hf-cache
    )
    path = COMPOSE / "pytorch.yml"
    path = path.resolve() if via == "resolved" else path
    base = ["compose", "-p", project, "-f", str(path), "-f", str(standin)]
    try:
        done = docker(*base, "run", "--rm", "-T", "pytorch",
                      "cat", "/llem/scripts/llem_generate_bench.py")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == script_text("llem_generate_bench.py")
    finally:
        docker(*base, "down", "-t", "0", "-v")
        docker("volume", "rm", "-f", volume)


@pytest.fixture
def swallowing_image() -> str:
    """A local image whose ENTRYPOINT exits at once, whatever its arguments (like `vllm serve`)."""
    name = f"llemt-entrypoint-{uuid.uuid4().hex[:8]}:latest"
    dockerfile = 'FROM llem-test-busybox:latest\nENTRYPOINT ["/bin/false"]\n'
    built = docker("build", "-q", "-t", name, "-", input=dockerfile)
    assert built.returncode == 0, built.stderr
    yield name
    docker("image", "rm", "-f", name)


def _up_vllm_service(run_spec, image: str, reset_entrypoint: bool) -> dict:
    """Start compose/vllm.yml's service (image swapped, no GPU) with llem's override."""
    from llem_cli.docker.override import write_override

    volume = f"{run_spec.project}-hf"
    # `!reset` (Compose 2.24+) drops the GPU reservation this machine cannot satisfy; the
    # volume gets a test name, never the user's real llem-hf-cache.
    entrypoint = "" if reset_entrypoint else '    entrypoint: ["/bin/false"]\n'
    standin_path = run_spec.run_dir / "standin.yml"
    standin_path.write_text(
        "services:\n"
        "  vllm:\n"
        f"    image: {image}\n"
        "    network_mode: none\n"
        "    ipc: private\n"
        "    deploy: !reset {}\n"
        f"{entrypoint}"
        "volumes:\n"
        "  hf-cache:\n"
        f"    name: {volume}\n"
    )
    override = write_override(run_spec.run_id, run_spec.run_dir, ["vllm"])
    base = ["compose", "-p", run_spec.project, "-f", str(COMPOSE / "vllm.yml")]
    base += ["-f", str(standin_path), "-f", str(override)]
    try:
        up = docker(*base, "up", "-d", "vllm")
        assert up.returncode == 0, up.stderr
        ids = docker(*base, "ps", "-aq", "vllm").stdout.split()
        assert len(ids) == 1
        time.sleep(1.0)
        state = docker("inspect", "--format", "{{json .}}", ids[0])
        return json.loads(state.stdout)
    finally:
        docker(*base, "down", "-t", "0")
        docker("volume", "rm", "-f", volume)


def test_vllm_entrypoint_reset_keeps_the_container_alive(run_spec, swallowing_image: str) -> None:
    info = _up_vllm_service(run_spec, swallowing_image, reset_entrypoint=True)
    assert info["Config"]["Cmd"] == ["sleep", "infinity"]
    assert not info["Config"]["Entrypoint"]
    assert info["State"]["Running"] is True


def test_without_the_reset_the_image_entrypoint_swallows_keepalive(
    run_spec, swallowing_image: str
) -> None:
    """The control: an ENTRYPOINT left in place takes `sleep infinity` as its arguments."""
    info = _up_vllm_service(run_spec, swallowing_image, reset_entrypoint=False)
    assert info["State"]["Running"] is False
    assert info["State"]["ExitCode"] != 0
