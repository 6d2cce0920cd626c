"""A lane's override through the real Docker Compose: what the merged model holds, and two lanes up.

``docker compose config --format json`` needs no GPU, no image pull and no daemon work, so the
pinned reservations are checked there; only a service without a GPU reservation is started (two
lanes at once, which its ``container_name`` and published port would forbid without the resets).
The override's text and the facts' parsing without an engine are in
tests/unit/test_override_lanes.py.
"""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llem_cli.docker.compose import ComposeCLI, discover_compose
from llem_cli.docker.override import LanePin, write_override
from llem_cli.docker.proc import SubprocessRunner
from llem_cli.docker.service_facts import (
    ServiceFacts,
    read_service_facts,
    supports_reset,
)
from llem_cli.errors import EnvironmentProblem
from llem_testkit import TEST_IMAGE
from llem_testkit.engine import skip_unless_possible

pytestmark = pytest.mark.docker

RUN_ID = "20261128T140500Z"
LANE1 = LanePin(1, ("GPU-11111111-aaaa-bbbb-cccc-000000000001", "GPU-11111111-aaaa-bbbb-cccc-2"))
LANE2 = LanePin(2, ("GPU-22222222-aaaa-bbbb-cccc-000000000003",))


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@functools.lru_cache(maxsize=1)
def compose_cli() -> ComposeCLI:
    return discover_compose()


@functools.lru_cache(maxsize=1)
def gpus_key_accepted() -> bool:
    """Whether this Compose knows the service-level ``gpus:`` (newer than !override)."""
    probe = f"services:\n  s:\n    image: {TEST_IMAGE}\n    gpus: all\n"
    done = subprocess.run(
        [*compose_cli().argv, "-p", "llemt-gpus-probe", "-f", "-", "config", "-q"],
        input=probe,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


@dataclass
class UserProject:
    """A user's compose file, a unique project name, and a run directory for the overrides."""

    path: Path
    project: str
    run_dir: Path
    container_name: str
    port: int

    def base(self, lane: int | None, override: Path | None) -> list[str]:
        name = self.project if lane is None else f"{self.project}-l{lane}"
        argv = ["compose", "-p", name, "-f", str(self.path)]
        return argv + (["-f", str(override)] if override is not None else [])

    def config(self, lane: int | None, override: Path | None) -> dict[str, Any]:
        done = docker(*self.base(lane, override), "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["services"]


@pytest.fixture
def user(tmp_path: Path) -> UserProject:
    if not supports_reset(compose_cli()):
        skip_unless_possible(f"{compose_cli().describe()} has no !reset/!override (2.24.4+)")
    tag = uuid.uuid4().hex[:8]
    container_name = f"llemt-lanes-{tag}-named"
    port = 20000 + int(tag[:4], 16) % 20000
    gpus_key = (
        f"  gpuskey:\n    image: {TEST_IMAGE}\n    network_mode: none\n    gpus: all\n"
        if gpus_key_accepted()
        else ""
    )
    path = tmp_path / "user.yml"
    path.write_text(
        "services:\n"
        "  reserved:\n"
        f"    image: {TEST_IMAGE}\n"
        "    network_mode: none\n"
        "    deploy:\n"
        "      resources:\n"
        "        reservations:\n"
        "          memory: 64m\n"
        "          devices:\n"
        "            - driver: nvidia\n"
        "              count: all\n"
        "              capabilities: [gpu]\n"
        f"{gpus_key}"
        "  named:\n"
        f"    image: {TEST_IMAGE}\n"
        "    network_mode: none\n"
        f"    container_name: {container_name}\n"
        f'    ports: ["127.0.0.1:{port}:80"]\n'
        "    environment:\n"
        "      NVIDIA_VISIBLE_DEVICES: all\n"
        "      OTHER: kept\n"
        "  listenv:\n"
        f"    image: {TEST_IMAGE}\n"
        "    network_mode: none\n"
        "    environment:\n"
        "      - NVIDIA_VISIBLE_DEVICES=all\n"
        "      - OTHER=kept\n"
        "  plain:\n"
        f"    image: {TEST_IMAGE}\n"
        "    network_mode: none\n"
    )
    return UserProject(path, f"llemt-lanes-{tag}", tmp_path / "run", container_name, port)


def _facts(user: UserProject) -> dict[str, ServiceFacts]:
    return read_service_facts(SubprocessRunner(), compose_cli(), [user.path], user.project)


def test_facts_read_from_the_users_file(user: UserProject) -> None:
    facts = _facts(user)
    expected = {
        "reserved": ServiceFacts(reserves_gpus=True),
        "named": ServiceFacts(
            container_name=user.container_name, has_ports=True, env_visible_devices="all"
        ),
        "listenv": ServiceFacts(env_visible_devices="all"),
        "plain": ServiceFacts(),
    }
    if gpus_key_accepted():
        expected["gpuskey"] = ServiceFacts(uses_gpus_key=True)
    assert facts == expected


def test_pinned_override_wins_in_the_merged_model(user: UserProject) -> None:
    facts = _facts(user)
    override = write_override(RUN_ID, user.run_dir, list(facts), pin=LANE1, facts=facts)
    assert override.name == "compose.override.l1.yaml"
    services = user.config(1, override)
    uuids = list(LANE1.uuids)
    pinned = {"capabilities": ["gpu"], "driver": "nvidia", "device_ids": uuids}
    for name, service in services.items():
        assert service["environment"]["NVIDIA_VISIBLE_DEVICES"] == ",".join(uuids), name
        assert service["labels"] == {"llem.run": RUN_ID, "llem.lane": "1"}, name
        assert "container_name" not in service and "ports" not in service, name
    # the user's environment, as a map and as a list, keeps its other variables
    assert services["named"]["environment"]["OTHER"] == "kept"
    assert services["listenv"]["environment"]["OTHER"] == "kept"
    # the reservation is replaced (no count: all left beside it); its memory stays
    reservations = services["reserved"]["deploy"]["resources"]["reservations"]
    assert reservations["devices"] == [pinned]
    assert int(reservations["memory"]) == 64 * 1024 * 1024
    for name in ("named", "listenv", "plain"):
        assert "deploy" not in services[name] and "gpus" not in services[name]


def test_pinned_gpus_key(user: UserProject) -> None:
    if not gpus_key_accepted():
        skip_unless_possible(f"{compose_cli().describe()} has no service-level gpus key")
    facts = _facts(user)
    override = write_override(RUN_ID, user.run_dir, ["gpuskey"], pin=LANE1, facts=facts)
    gpus = user.config(1, override)["gpuskey"]["gpus"]
    assert gpus == [{"capabilities": ["gpu"], "driver": "nvidia", "device_ids": list(LANE1.uuids)}]


def test_without_override_tag_compose_appends_the_reservation(user: UserProject) -> None:
    """The control: a plain list in an override is appended, so count: all would stay."""
    plain = user.run_dir / "plain-merge.yaml"
    user.run_dir.mkdir(parents=True, exist_ok=True)
    plain.write_text(
        "services:\n  reserved:\n    deploy:\n      resources:\n        reservations:\n"
        "          devices:\n            - driver: nvidia\n              device_ids: [GPU-x]\n"
        "              capabilities: [gpu]\n"
    )
    devices = user.config(1, plain)["reserved"]["deploy"]["resources"]["reservations"]["devices"]
    assert [d.get("count") for d in devices] == [-1, None]


@pytest.fixture
def projects(user: UserProject) -> Iterator[list[list[str]]]:
    """Compose argv bases started by a test; each is brought down afterwards."""
    started: list[list[str]] = []
    try:
        yield started
    finally:
        for base in started:
            docker(*base, "down", "-t", "0", "--remove-orphans")


def _inspect(base: list[str], service: str) -> dict[str, Any]:
    ids = docker(*base, "ps", "-aq", service).stdout.split()
    assert len(ids) == 1, ids
    done = docker("inspect", ids[0])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]


def test_two_lanes_run_the_named_service_at_once(
    user: UserProject, projects: list[list[str]]
) -> None:
    facts = _facts(user)
    for pin in (LANE1, LANE2):
        override = write_override(RUN_ID, user.run_dir, ["named"], pin=pin, facts=facts)
        base = user.base(pin.lane, override)
        projects.append(base)
        up = docker(*base, "up", "-d", "named")
        assert up.returncode == 0, up.stderr
    names = set()
    for pin, base in zip((LANE1, LANE2), projects, strict=True):
        info = _inspect(base, "named")
        assert info["State"]["Running"] is True
        names.add(info["Name"])
        assert info["Config"]["Labels"]["llem.lane"] == str(pin.lane)
        assert f"NVIDIA_VISIBLE_DEVICES={pin.visible_devices}" in info["Config"]["Env"]
        assert "OTHER=kept" in info["Config"]["Env"]
        assert not info["HostConfig"]["PortBindings"]
    assert len(names) == 2 and f"/{user.container_name}" not in names


def test_without_the_resets_a_second_project_collides(
    user: UserProject, projects: list[list[str]]
) -> None:
    """The control: the user's container_name in two projects is a conflict."""
    for lane in (1, 2):
        base = user.base(lane, None)
        projects.append(base)
        up = docker(*base, "up", "-d", "named")
        if lane == 1:
            assert up.returncode == 0, up.stderr
    assert up.returncode != 0
    assert "already in use" in up.stderr


def test_facts_of_a_service_behind_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "profiled.yml"
    path.write_text(
        f"services:\n  gpu:\n    image: {TEST_IMAGE}\n    network_mode: none\n"
        "    profiles: [gpu]\n    privileged: true\n"
    )
    project = f"llemt-lanes-{uuid.uuid4().hex[:8]}"
    runner = SubprocessRunner()
    assert read_service_facts(runner, compose_cli(), [path], project) == {}
    facts = read_service_facts(runner, compose_cli(), [path], project, services=["gpu"])
    assert facts == {"gpu": ServiceFacts(privileged=True)}


def test_a_file_compose_rejects_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(f"services:\n  app:\n    image: {TEST_IMAGE}\n    container_name: x\n")
    with pytest.raises(EnvironmentProblem) as info:
        read_service_facts(SubprocessRunner(), compose_cli(), [path], "llemt-lanes-bad")
    line = info.value.one_line()
    assert str(path) in line and "container_name" in line and "\n" not in line
