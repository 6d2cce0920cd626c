"""The campaign loop on a scripted container layer: table tests without Docker.

:class:`ScriptedContainers` implements the loop's container protocol
(:class:`llem_cli.runner.containers.Containers`) from a script: each experiment key maps to the
outcome of each attempt, each probe to a status. Every call (container verbs, the energy
window's open and close, journaled restarts) goes into one ordered log, so a test reads what the
loop did as a sequence. The same loop runs a real campaign (tests/e2e) and ``--dry-run``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llem_cli.campaign.load import LoadedCampaign, load_campaign
from llem_cli.docker.probe import GpuStatus, ProbeResult
from llem_cli.errors import RunAborted
from llem_cli.runner.dry_run import UnwrittenJournal
from llem_cli.runner.loop import CampaignLoop, LoopContext
from llem_cli.runner.schedule import Experiment, order_experiments
from llem_cli.runs.state import RunState
from llem_cli.telemetry import Measurement
from llem_testkit.fake_containers import FakeContainers

COMPOSE = "services:\n  a:\n    image: x\n  b:\n    image: x\n"


@dataclass(kw_only=True)
class ScriptedContainers(FakeContainers):
    """The container protocol from a script; ``calls`` is the ordered log shared with
    :class:`ScriptedMeasuring` and the journal. ``probes``: statuses, consumed in order (then
    ``ok``), each ``ok`` probe at ``memory_pct``."""

    probes: list[str] = field(default_factory=list)
    memory_pct: float = 10.0

    def detail(self, status: str) -> str:
        return f"scripted {status}"

    def probe(
        self, service: str, argv: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ProbeResult:
        self.calls.append(("probe", service))
        status = self.probes.pop(0) if self.probes else "ok"
        if status != "ok":
            return ProbeResult(status)  # type: ignore[arg-type]
        gpu = GpuStatus(0, "GPU-0", self.memory_pct * 10, 1000.0)
        return ProbeResult("ok", gpus=(gpu,))


@dataclass
class ScriptedMeasuring:
    """Host measurement that logs its windows and reports 100 J for each."""

    calls: list[tuple[str, ...]]

    def announce(self) -> None:
        pass

    def measure_idle_baseline(self) -> None:
        pass

    def wait_until_cool(self, gpus: list[int] | None) -> None:
        return None

    def begin(self, key: str, gpus: list[int] | None) -> None:
        self.calls.append(("window_begin", key))

    def end(self, key: str) -> Measurement:
        self.calls.append(("window_end", key))
        return Measurement(
            key, [0], 0.0, 1.0, 1.0, energy_j=100.0, method="counter", avg_power_w=100.0
        )

    def close(self) -> None:
        pass


@dataclass
class Harness:
    """One loop over the scripted layer, and everything it did."""

    loaded: LoadedCampaign
    containers: ScriptedContainers
    events: list[dict[str, Any]]
    calls: list[tuple[str, ...]]
    sleeps: list[float]
    loop: CampaignLoop

    @property
    def experiments(self) -> list[Experiment]:
        return list(order_experiments(self.loaded.configs, self.loaded.campaign))

    def records(self) -> dict[str, dict[str, Any]]:
        """The latest record per key, as journaled."""
        return {e["key"]: e["record"] for e in self.events if "record" in e}

    def verbs(self) -> list[tuple[str, ...]]:
        """The container calls only (no windows, no journal)."""
        return [c for c in self.calls if not c[0].startswith(("window", "journal"))]


def make_loop(
    tmp_path: Path,
    body: str,
    *,
    outcomes: Mapping[str, Sequence[str]] | None = None,
    probes: list[str] | None = None,
    memory_pct: float = 10.0,
) -> Harness:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    path = tmp_path / "campaign.yaml"
    path.write_text("name: t\ncompose: compose.yml\n" + textwrap.dedent(body))
    loaded = load_campaign(path)
    calls: list[tuple[str, ...]] = []
    events: list[dict[str, Any]] = []
    sleeps: list[float] = []
    containers = ScriptedContainers(
        calls=calls, outcomes=outcomes or {}, probes=probes or [], memory_pct=memory_pct
    )
    journal = UnwrittenJournal()

    class LoggedJournal:
        def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
            event = journal.append(kind, **fields)
            events.append(event)
            if kind == "restart":
                calls.append(("journal_restart", str(fields["service"])))
            return event

    experiments = list(order_experiments(loaded.configs, loaded.campaign))
    context = LoopContext(
        campaign=loaded.campaign,
        run_id="r1",
        experiments=experiments,
        replayed=RunState(),
        prepare_dir=lambda key: tmp_path / "run" / key,
    )
    loop = CampaignLoop(
        context,
        containers=containers,
        measuring=ScriptedMeasuring(calls),
        journal=LoggedJournal(),
        emit=lambda _event: None,
        sleep=sleeps.append,
        check_env=lambda _outcome, _dir: None,
    )
    return Harness(loaded, containers, events, calls, sleeps, loop)


TWO_BACKENDS = """
backends:
  a: {command: [run, "{x}"]}
  b: {command: [run, "{x}"]}
grid: {x: [1, 2]}
execution: {cycles: 1, retries: 1, gap: 0}
health: {every: 1, max_restarts: 3, restart_backoff: 2s}
"""


def key_of(h: Harness, backend: str, x: int, cycle: int = 1) -> str:
    return next(
        e.key
        for e in h.experiments
        if e.config.backend == backend and e.config.params["x"] == x and e.cycle == cycle
    )


def test_ok_path_probes_runs_and_removes_each_container_after_its_last_experiment(
    tmp_path: Path,
) -> None:
    h = make_loop(tmp_path, TWO_BACKENDS)
    h.loop.run_all()
    a1, a2, b1, b2 = (key_of(h, b, x) for b in "ab" for x in (1, 2))
    assert h.verbs() == [
        ("start", "a"), ("probe", "a"), ("exec", "a", a1), ("probe", "a"), ("exec", "a", a2),
        ("stop", "a"),
        ("start", "b"), ("probe", "b"), ("exec", "b", b1), ("probe", "b"), ("exec", "b", b2),
        ("stop", "b"),
    ]  # fmt: skip
    records = h.records()
    assert {r["status"] for r in records.values()} == {"ok"}
    assert all(r["energy_j"] == 100.0 for r in records.values())
    assert h.sleeps == []


@pytest.mark.parametrize(
    ("script", "retries", "statuses", "attempts", "restarts"),
    [
        (["container_died", "ok"], 1, "ok", 2, 1),  # restarted, retried, then fine
        (["timeout", "ok"], 1, "ok", 2, 1),  # a timeout retries like a dead container
        (["container_died", "container_died"], 1, "container_died", 2, 2),  # retries spent
        (["container_died"], 0, "container_died", 1, 1),  # no retry, but the restart is due
        (["failed"], 1, "failed", 1, 0),  # the command's own failure: kept, not retried
        (["oom_killed"], 1, "oom_killed", 1, 1),  # restart, no retry
    ],
)
def test_retries_and_restarts_as_decided(
    tmp_path: Path,
    script: list[str],
    retries: int,
    statuses: str,
    attempts: int,
    restarts: int,
) -> None:
    body = TWO_BACKENDS.replace("retries: 1", f"retries: {retries}")
    first = make_loop(tmp_path, body).experiments[0].key
    h = make_loop(tmp_path, body, outcomes={first: script})
    h.loop.run_all()
    record = h.records()[first]
    assert (record["status"], record["attempts"]) == (statuses, attempts)
    assert [c for c in h.calls if c[0] == "restart"] == [("restart", "a")] * restarts
    # every restart is journaled before it happens, backs off (doubling), then probes again
    assert h.sleeps == [2.0 * 2**i for i in range(restarts)]
    for i, call in enumerate(h.calls):
        if call[0] == "restart":
            assert h.calls[i - 1] == ("journal_restart", "a")
            assert h.calls[i + 1] == ("probe", "a")
    others = [r for k, r in h.records().items() if k != first]
    assert all(r["status"] == "ok" and r["restarts_before"] == restarts for r in others)


def test_a_window_never_spans_a_restart(tmp_path: Path) -> None:
    first = make_loop(tmp_path, TWO_BACKENDS).experiments[0].key
    h = make_loop(tmp_path, TWO_BACKENDS.replace("retries: 1", "retries: 0"),
                  outcomes={first: ["timeout"]})  # fmt: skip
    h.loop.run_all()
    window = f"{first}#1"
    begin = h.calls.index(("window_begin", window))
    end = h.calls.index(("window_end", window))
    restart = h.calls.index(("restart", "a"))
    assert begin < h.calls.index(("exec", "a", first)) < end < restart
    # the window closed at the timeout: real joules, but not the experiment's whole
    record = h.records()[first]
    assert record["status"] == "timeout"
    assert record["energy_j"] is None and record["avg_power_w"] is None
    assert "window_cut_by_timeout" in record["measurement"]["flags"]
    assert "execution.timeout" in record["measurement"]["reasons"]["energy_j"]


def test_every_executed_record_says_whether_its_window_includes_model_load(
    tmp_path: Path,
) -> None:
    """An offline command loads its model inside the measured exec (the default); a backend
    marked ``loads_model: false`` (a client of a loaded server) does not, whatever the outcome."""
    body = TWO_BACKENDS.replace(
        '  b: {command: [run, "{x}"]}', '  b: {command: [run, "{x}"], loads_model: false}'
    )
    h0 = make_loop(tmp_path, body)
    a1, b1 = key_of(h0, "a", 1), key_of(h0, "b", 1)
    h = make_loop(tmp_path, body.replace("retries: 1", "retries: 0"),
                  outcomes={a1: ["failed"], b1: ["timeout"]})  # fmt: skip
    h.loop.run_all()
    records = h.records()
    assert {k: r["status"] for k, r in records.items() if k in (a1, b1)} == {
        a1: "failed",
        b1: "timeout",
    }
    loads = {k: r["measurement"]["includes_model_load"] for k, r in records.items()}
    assert loads == {k: r["backend"] == "a" for k, r in records.items()}
    assert len(records) == 4


def test_timeout_of_a_backends_last_experiment_removes_its_container_at_once(
    tmp_path: Path,
) -> None:
    # nothing else runs in that container: a restart would be wasted budget, but the timed-out
    # process must not keep the GPU busy while the next backend measures
    h0 = make_loop(tmp_path, TWO_BACKENDS)
    a2 = key_of(h0, "a", 2)
    h = make_loop(tmp_path, TWO_BACKENDS.replace("retries: 1", "retries: 0"),
                  outcomes={a2: ["timeout"]})  # fmt: skip
    h.loop.run_all()
    assert ("restart", "a") not in h.calls
    assert h.verbs().index(("stop", "a")) < h.verbs().index(("start", "b"))
    assert h.records()[a2]["status"] == "timeout"
    assert h.loop.state.restarts_total == 0


def test_a_hung_probe_restarts_the_container_before_anything_runs(tmp_path: Path) -> None:
    h = make_loop(tmp_path, TWO_BACKENDS, probes=["timeout"])
    h.loop.run_all()
    first = h.experiments[0].key
    assert h.verbs()[:5] == [
        ("start", "a"), ("probe", "a"), ("restart", "a"), ("probe", "a"), ("exec", "a", first),
    ]  # fmt: skip
    assert h.records()[first]["restarts_before"] == 1


def test_memory_over_the_limit_restarts_and_a_spent_budget_aborts(tmp_path: Path) -> None:
    body = TWO_BACKENDS.replace("max_restarts: 3", "max_restarts: 1")
    h = make_loop(tmp_path, body, memory_pct=95.0)
    with pytest.raises(RunAborted, match="restart budget spent"):
        h.loop.run_all()
    assert [c for c in h.calls if c[0] == "restart"] == [("restart", "a")]
    assert not any(c[0] == "exec" for c in h.calls)  # nothing ran on a full GPU
    assert h.records() == {}


def test_gpu_lost_aborts_without_a_restart(tmp_path: Path) -> None:
    h = make_loop(tmp_path, TWO_BACKENDS, probes=["gpu_lost"])
    with pytest.raises(RunAborted, match="GPU lost"):
        h.loop.run_all()
    assert ("restart", "a") not in h.calls


def test_not_runnable_skips_the_rest_of_the_backend(tmp_path: Path) -> None:
    h0 = make_loop(tmp_path, TWO_BACKENDS)
    a1, a2 = key_of(h0, "a", 1), key_of(h0, "a", 2)
    h = make_loop(tmp_path, TWO_BACKENDS, outcomes={a1: ["not_runnable"]})
    h.loop.run_all()
    records = h.records()
    assert records[a1]["status"] == "not_runnable"
    assert records[a2]["status"] == "skipped" and a1 in records[a2]["error"]
    assert ("exec", "a", a2) not in h.calls
    assert {records[key_of(h, "b", x)]["status"] for x in (1, 2)} == {"ok"}


def test_gpu_oom_prunes_the_larger_configurations(tmp_path: Path) -> None:
    body = """
    backends:
      a: {command: [run, "{x}"]}
    grid: {x: [1, 2, 4]}
    execution: {cycles: 1, retries: 0, gap: 0, prune_on_oom: [x]}
    health: {every: 0, restart_backoff: 0}
    """
    h0 = make_loop(tmp_path, body)
    x1, x2, x4 = (key_of(h0, "a", x) for x in (1, 2, 4))
    h = make_loop(tmp_path, body, outcomes={x2: ["gpu_oom"]})
    h.loop.run_all()
    records = h.records()
    assert [records[k]["status"] for k in (x1, x2, x4)] == ["ok", "gpu_oom", "pruned"]
    assert ("exec", "a", x4) not in h.calls
    # pruning left nothing to run in the container: no restart for nobody, and it is removed
    assert ("restart", "a") not in h.calls and h.verbs()[-1] == ("stop", "a")


def test_probe_every_second_experiment_and_always_after_a_restart(tmp_path: Path) -> None:
    body = """
    backends:
      a: {command: [run, "{x}"]}
    grid: {x: [1, 2, 3, 4]}
    execution: {cycles: 1, retries: 1, gap: 0}
    health: {every: 2, restart_backoff: 0}
    """
    h0 = make_loop(tmp_path, body)
    keys = [e.key for e in h0.experiments]
    h = make_loop(tmp_path, body, outcomes={keys[1]: ["container_died", "ok"]})
    h.loop.run_all()
    assert h.verbs() == [
        ("start", "a"), ("probe", "a"), ("exec", "a", keys[0]),
        ("exec", "a", keys[1]), ("restart", "a"), ("probe", "a"), ("exec", "a", keys[1]),
        ("exec", "a", keys[2]), ("probe", "a"), ("exec", "a", keys[3]),
        ("stop", "a"),
    ]  # fmt: skip


def test_gaps_and_cycle_gaps_are_slept(tmp_path: Path) -> None:
    body = """
    backends:
      a: {command: [run, "{x}"]}
    grid: {x: [1, 2]}
    execution: {cycles: 2, gap: 3s, cycle_gap: 10s, order: interleaved}
    health: {every: 0}
    """
    h = make_loop(tmp_path, body)
    h.loop.run_all()
    assert h.sleeps == [3.0, 10.0, 3.0]
