"""Serving backends in the loop, on a scripted container layer (no Docker).

A serving backend's container runs a server per server configuration; experiments are client
execs. :class:`ServerContainers` scripts the server side: how many ``ready`` polls a start
takes, whether it never gets ready or dies, the GPU memory a probe shows. The tests check what
the contract promises: one server start per server configuration in grouped order (a new
configuration is no restart), ``ready`` after every start and restart, a failed start counted
as a restart and, with the budget spent, a failed record with the server's last lines and exit
4; the memory rule judging growth over the level right after ready.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llem_cli.campaign.load import load_campaign
from llem_cli.campaign.servers import server_id
from llem_cli.docker.probe import GpuStatus, ProbeResult
from llem_cli.errors import RunAborted
from llem_cli.runner.dry_run import UnwrittenJournal
from llem_cli.runner.loop import CampaignLoop, LoopContext
from llem_cli.runner.measuring import NoMeasuring
from llem_cli.runner.schedule import order_experiments
from llem_cli.runs.state import RunState
from llem_testkit.fake_containers import FakeContainers


@dataclass(kw_only=True)
class ServerContainers(FakeContainers):
    """A serving container layer from a script.

    ``load_polls``: ``ready`` answers not ready this many times after each start or restart;
    ``never_ready``: it never does; ``outcomes``: client exec statuses per key and attempt;
    ``memory``: probe memory percentages, consumed in order (then the last one stays).
    """

    exec_s: float = 0.1
    load_polls: int = 2
    never_ready: bool = False
    memory: list[float] = field(default_factory=lambda: [92.0])
    command: dict[str, list[str]] = field(default_factory=dict)
    polls_left: int = 0

    def start(self, service: str) -> None:
        self.calls.append(("start", service, " ".join(self.command.get(service, []))))
        self.polls_left = self.load_polls

    def configure_server(
        self, service: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        self.command[service] = list(argv)

    def ready(self, service: str, argv: Sequence[str], *, timeout_s: float) -> tuple[str, str]:
        self.calls.append(("ready", service))
        if self.never_ready:
            return "not_ready", "connection refused"
        if self.polls_left > 0:
            self.polls_left -= 1
            return "not_ready", "loading"
        return "ready", ""

    def logs_tail(self, service: str, lines: int = 20) -> str:
        return "loading weights\nCUDA error: out of memory\n"

    def work(self, service: str, argv: Sequence[str], env: Mapping[str, str], key: str) -> None:
        self.calls.append(("exec", service, " ".join(argv)))

    def probe(
        self, service: str, argv: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ProbeResult:
        pct = self.memory.pop(0) if len(self.memory) > 1 else self.memory[0]
        self.calls.append(("probe", service, f"{pct:g}"))
        return ProbeResult("ok", gpus=(GpuStatus(0, "GPU-0", pct * 10, 1000.0),))

    def restart(self, service: str) -> None:
        self.calls.append(("restart", service))
        self.polls_left = self.load_polls


SERVING = """
backends:
  vllm:
    serve: [serve, --seqs, "{max_num_seqs}"]
    ready: [ready]
    ready_timeout: READY_TIMEOUT
    command: [client, --rate, "{request_rate}", --out, "{experiment_dir}"]
grid:
  max_num_seqs: [64, 256]
  request_rate: [1, 4, 16]
execution: {cycles: 2, order: ORDER, retries: RETRIES}
health: {every: 1, max_restarts: 2, restart_backoff: 0, max_memory_growth_pct: 5}
"""


@dataclass
class Harness:
    containers: ServerContainers
    events: list[dict[str, Any]]
    sleeps: list[float]
    loop: CampaignLoop

    def records(self) -> dict[str, dict[str, Any]]:
        return {e["key"]: e["record"] for e in self.events if "record" in e}

    def of(self, *kinds: str) -> list[tuple[str, ...]]:
        return [c for c in self.containers.calls if c[0] in kinds]


def campaign_text(order: str = "grouped", ready_timeout: str = "1h", retries: int = 0) -> str:
    body = textwrap.dedent(SERVING).replace("ORDER", order).replace("RETRIES", str(retries))
    return "name: t\ncompose: compose.yml\n" + body.replace("READY_TIMEOUT", ready_timeout)


def make(
    tmp_path: Path,
    order: str = "grouped",
    *,
    ready_timeout: str = "1h",
    retries: int = 0,
    **script: Any,
) -> Harness:
    (tmp_path / "compose.yml").write_text("services:\n  vllm:\n    image: x\n")
    path = tmp_path / "campaign.yaml"
    body = campaign_text(order, ready_timeout, retries)
    path.write_text(body)
    loaded = load_campaign(path)
    containers = ServerContainers(**script)
    events: list[dict[str, Any]] = []
    sleeps: list[float] = []
    journal = UnwrittenJournal()

    class Logged:
        def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
            event = journal.append(kind, **fields)
            events.append(event)
            return event

    context = LoopContext(
        campaign=loaded.campaign,
        run_id="r1",
        experiments=list(order_experiments(loaded.configs, loaded.campaign)),
        replayed=RunState(),
        prepare_dir=lambda key: tmp_path / "run" / key,
    )
    loop = CampaignLoop(
        context,
        containers=containers,
        measuring=NoMeasuring(),
        journal=Logged(),
        emit=lambda _event: None,
        sleep=sleeps.append,
        check_env=lambda _o, _d: None,
    )
    return Harness(containers, events, sleeps, loop)


def test_grouped_order_starts_each_server_configuration_once(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.loop.run_all()
    starts = h.of("start")
    assert [c[2] for c in starts] == ["serve --seqs 64", "serve --seqs 256"]
    records = h.records()
    assert len(records) == 12 and all(r["status"] == "ok" for r in records.values())
    assert h.of("restart") == []  # a new server configuration is no restart
    assert all(r["restarts_before"] == 0 for r in records.values())
    # each client ran against the server of its own params
    current = ""
    for call in h.containers.calls:
        if call[0] == "start":
            current = call[2].split()[-1]
        if call[0] == "exec":
            key = next(k for k in records if k in call[2])
            assert str(records[key]["params"]["max_num_seqs"]) == current
    # records carry their server's id; clients sharing a server share it
    ids = {r["server_id"] for r in records.values()}
    assert len(ids) == 2


def test_interleaved_order_starts_a_server_at_every_change(tmp_path: Path) -> None:
    h = make(tmp_path, order="interleaved")
    h.loop.run_all()
    # per cycle: 64,64,64 then 256,256,256 (expansion order), so two starts a cycle
    assert len(h.of("start")) == 4
    assert h.of("restart") == []


def test_ready_is_polled_after_every_start_and_the_wait_is_journaled(tmp_path: Path) -> None:
    h = make(tmp_path, load_polls=3)
    h.loop.run_all()
    assert len(h.of("ready")) == 2 * 4  # 3 not ready + 1 ready per start
    ready = [e for e in h.events if e.get("type") == "server_ready"]
    assert [e["memory_used_pct"] for e in ready] == [92.0, 92.0]
    assert h.sleeps.count(1.0) == 6  # one poll interval between ready execs


def test_a_server_that_never_gets_ready_spends_the_budget_then_fails_with_its_log(
    tmp_path: Path,
) -> None:
    h = make(tmp_path, never_ready=True, ready_timeout="0.2")
    with pytest.raises(RunAborted, match="not ready within ready_timeout"):
        h.loop.run_all()
    assert len(h.of("restart")) == 2  # max_restarts: 2, each failed start counted
    (record,) = h.records().values()
    assert record["status"] == "failed"
    assert "restart budget spent" in record["error"]
    assert "CUDA error: out of memory" in record["error"]  # the server's last lines


def test_a_server_that_dies_under_a_client_restarts_and_the_experiment_retries(
    tmp_path: Path,
) -> None:
    h = make(tmp_path, retries=1)
    first = next(
        iter(
            order_experiments(
                load_campaign(tmp_path / "campaign.yaml").configs,
                load_campaign(tmp_path / "campaign.yaml").campaign,
            )
        )
    )
    h.containers.outcomes = {first.key: ["container_died", "ok"]}
    h.loop.run_all()
    calls = h.containers.calls
    restart = calls.index(("restart", "vllm"))
    assert ("ready", "vllm") in calls[restart:]  # ready again after the restart
    records = h.records()
    assert records[first.key]["status"] == "ok" and records[first.key]["attempts"] == 2


def test_memory_rule_for_a_server_is_growth_over_the_level_after_ready(tmp_path: Path) -> None:
    # after ready: 92 %; before the clients: 95 (fine, +3), then 98.5 (+6.5 > 5: restart)
    h = make(tmp_path, memory=[92.0, 95.0, 98.5, 92.0, 92.0])
    h.loop.run_all()
    restarts = [e for e in h.events if e.get("type") == "restart"]
    assert len(restarts) == 1, [e["reason"] for e in restarts]
    assert "points over the 92% right after the server was ready" in restarts[0]["reason"]


def test_server_ids_follow_the_server_params_only(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text("services:\n  vllm:\n    image: x\n")
    path = tmp_path / "campaign.yaml"
    path.write_text(campaign_text())
    loaded = load_campaign(path)
    ids = {
        (c.params["max_num_seqs"], c.params["request_rate"]): server_id(loaded.campaign, c)
        for c in loaded.configs
    }
    assert ids[(64, 1)] == ids[(64, 16)] != ids[(256, 1)]
