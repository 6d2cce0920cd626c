"""Scenario: ``kill -9`` of llem holding GPUs at ``gpu_settings``, then ``down`` or the next run.

Two stand-in GPUs (the ``libnvidia-ml.so.1`` of llem_testkit/nvml_stub, built into the
scenario's folder), each with its own original power limit (600 W and 550 W) and clocks
unlocked. Whatever a setter changes lives in the stand-in's settings file, beside its state
file, so it outlives the killed llem as it would on a real driver. ``LLEM_STATE_DIR`` is the
scenario's own folder, shared by every campaign (a host-wide state file). The campaign:
``gpu_settings: {power_limit_w: [200, 300, 450], sm_clock_mhz: [null, 1410]}`` times
``secs: [0.5, 1.2]`` (``llem-fake-busy {secs}`` from the test image): 12 experiments, one
cycle; campaigns alternate ``lanes: 2`` (one GPU per lane, two threads applying settings) and no
lanes (each experiment sets both GPUs).

Each round starts ``llem run FILE --resume`` and SIGKILLs it at a seeded moment, drawn from:
*start-up* (0.1-1.5 s: interpreter start, the restore of what an earlier kill left, the
permission and value preflight); *first apply* (as soon as the state file holds an entry owned
by this llem, plus 0-0.08 s: between saving a GPU's original and the first setter, or just after);
*any* (0.3-8 s: containers starting, experiments, settings changing between them); *end*
(once every key has its ok record: two in three of these at the first settings-file change after
that, i.e. inside the restore, the others 0-0.7 s later: container teardown, the restore, the final
journal lines, which take about 0.5-1 s here; in a session with nothing left to run it fires at
once, and "in the restore" is then the restore of what the last kill left). Then, in about 60%
of the rounds, ``llem down FILE``; in the others nothing, and the next round's ``llem run
--resume`` must restore first.

Checked, from separate processes:

* at every kill: each state-file entry's saved original is the GPU's true original (a run that
  saved a changed value as "original" would restore the wrong one);
* after every ``down``, and after every run that exits by itself: through real pynvml on the
  stand-in, every GPU's power limit is its original and its SM and memory clocks read unlocked;
  the settings file holds no ``*_locked`` line; the state file holds no entry; no container of
  the campaign (its project, its lanes' projects, label ``llem.project``) is left;
* after a round with no ``down`` that left entries: the next ``llem run``, once it got as far
  as ``run_started`` (or exited), printed ``restored GPU <i> (<uuid>)`` for each of them;
* per campaign, when it finishes: every key exactly one ok ``experiment_finished`` over the
  whole journal, one run, no replay defect; and every ok record ran at its own settings (the
  read-back per GPU: power limit = the param, SM clock = the lock or the unlocked 1980 MHz),
  so no setting left by a killed session leaked into a later experiment.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.common import (
    E2ECampaign,
    Row,
    containers,
    events,
    kill9,
    log,
    new_campaign,
    no_traceback,
    of_type,
    plan_keys_of,
    project_containers,
    scratch,
    tally,
)
from llem_testkit.nvml_stub import Stub, build_stub

NAME = "kill -9 llem holding gpu_settings, down / next run"
GPUS = 2
ORIGINAL_MW = {0: 600_000, 1: 550_000}  # each GPU its own: a swapped restore shows
UNLOCKED_SM, UNLOCKED_MEM = 1980, 2619  # the stand-in's clocks when not locked
POWER = [200, 300, 450]
SM = [None, 1410]
SECS = [0.5, 1.2]
EXPERIMENTS = len(POWER) * len(SM) * len(SECS)
MODES = (("start-up", 0.2), ("first apply", 0.25), ("any", 0.3), ("end", 0.25))
NO_DOWN = 0.4  # share of rounds with no `llem down`: the next run restores
ROUND_LIMIT_S = 120.0


def uuid_of(i: int) -> str:
    return f"GPU-00000000-0000-0000-0000-{i:012d}"


# ---- the stand-in GPUs and what they hold --------------------------------------------------------


def two_gpus(base: Path) -> Stub:
    """Build the stand-in NVML and write two GPUs at their original settings."""
    stub = Stub(build_stub(base / "nvml"), base / "nvml-state" / "state")
    stub.state_file.parent.mkdir()
    (base / "busy").mkdir()
    state: dict[str, Any] = {"count": GPUS, "t0": time.time(), "busy_dir": base / "busy"}
    for i in range(GPUS):
        state.update(
            {
                f"gpu{i}.energy_mj": 0,
                f"gpu{i}.energy_rate_mw": 50_000,
                f"gpu{i}.power_mw": 50_000,
                f"gpu{i}.busy_power_mw": 400_000,
                f"gpu{i}.temp_c": 40,
                f"gpu{i}.power_limit_mw": ORIGINAL_MW[i],
                f"gpu{i}.power_limit_min_mw": 100_000,
                f"gpu{i}.power_limit_max_mw": 700_000,
            }
        )
    stub.write_state(state)
    return stub


_READ_GPUS = """
import pynvml
pynvml.nvmlInit()
result = []
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    uuid = pynvml.nvmlDeviceGetUUID(h)
    result.append({
        "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
        "power_limit_mw": pynvml.nvmlDeviceGetPowerManagementLimit(h),
        "sm_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
    })
pynvml.nvmlShutdown()
"""


def gpus_changed(stub: Stub) -> dict[int, str]:
    """GPU index -> how it differs from its original, read through real pynvml in a separate
    process, plus any lock line in the stand-in's settings file."""
    found: dict[int, list[str]] = {}
    for i, gpu in enumerate(stub.run(_READ_GPUS)):
        if gpu["power_limit_mw"] != ORIGINAL_MW[i]:
            found.setdefault(i, []).append(
                f"power limit {gpu['power_limit_mw'] / 1000:g} W, "
                f"original {ORIGINAL_MW[i] / 1000:g} W"
            )
        if gpu["sm_mhz"] != UNLOCKED_SM:
            found.setdefault(i, []).append(f"SM clock {gpu['sm_mhz']} MHz (locked?)")
        if gpu["mem_mhz"] != UNLOCKED_MEM:
            found.setdefault(i, []).append(f"memory clock {gpu['mem_mhz']} MHz (locked?)")
    for i, text in locks(stub).items():
        found.setdefault(i, []).append(f"settings file: {text}")
    return {i: "; ".join(v) for i, v in sorted(found.items())}


def settings_text(stub: Stub) -> str:
    try:
        return stub.settings_file.read_text()
    except FileNotFoundError:
        return ""


def locks(stub: Stub) -> dict[int, str]:
    """GPU index -> its ``*_locked`` lines in the settings file."""
    out: dict[int, list[str]] = {}
    for line in settings_text(stub).splitlines():
        name, _, _ = line.partition("=")
        if name.startswith("gpu") and name.endswith("_locked"):
            out.setdefault(int(name[3:].split(".")[0]), []).append(line)
    return {i: ", ".join(v) for i, v in out.items()}


def changed_now(stub: Stub) -> list[int]:
    """GPUs not at their originals, from the settings file alone (cheap: no process)."""
    limit = dict(ORIGINAL_MW)
    for line in settings_text(stub).splitlines():
        name, _, value = line.partition("=")
        if name.startswith("gpu") and name.endswith(".power_limit"):
            limit[int(name[3:].split(".")[0])] = int(value.split()[1])
    return sorted({i for i in limit if limit[i] != ORIGINAL_MW[i]} | set(locks(stub)))


def state_entries(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "gpu-state.json"
    try:
        return dict(json.loads(path.read_text())["gpus"])
    except FileNotFoundError:
        return {}


# ---- campaigns -----------------------------------------------------------------------------------


def settings_campaign(base: Path, index: int, stub: Stub, state_dir: Path) -> E2ECampaign:
    c = new_campaign(base, f"sk9-{index}")
    c.env.update(
        LD_LIBRARY_PATH=str(stub.lib_dir),
        FAKE_NVML_STATE=str(stub.state_file),
        LLEM_STATE_DIR=str(state_dir),
    )
    service = {
        "volumes": [f"{stub.state_file.parent}:/llem/fake-nvml:ro", f"{base / 'busy'}:/busy"],
        "environment": {
            "LLEM_FAKE_NVML_STATE": f"/llem/fake-nvml/{stub.state_file.name}",
            "LLEM_FAKE_BUSY_DIR": "/busy",
        },
    }
    execution: dict[str, Any] = {"cycles": 1}
    if index % 2 == 0:
        execution["lanes"] = GPUS
    c.write(
        {"bench": {"command": ["llem-fake-busy", "{secs}"]}},
        services={"bench": service},
        grid={"secs": SECS},
        gpu_settings={"power_limit_w": POWER, "sm_clock_mhz": SM},
        execution=execution,
        health={"every": 1},
    )
    return c


def left_containers(c: E2ECampaign) -> list[str]:
    ids = set(containers(f"llem.project={c.project}")) | set(project_containers(c.project))
    for lane in range(GPUS):
        ids |= set(project_containers(f"{c.project}-l{lane}"))
    return sorted(ids)


def first_run(c: E2ECampaign) -> Path | None:
    runs = [r for r in c.run_dirs() if of_type(r, "run_started")]
    return runs[0] if runs else None


def ok_keys(run_dir: Path | None) -> set[str]:
    if run_dir is None:
        return set()
    path = run_dir / "journal.jsonl"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return set()
    keys = set()
    for line in text.splitlines():
        if '"experiment_finished"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event["record"]["status"] == "ok":
            keys.add(event["key"])
    return keys


def settings_leaks(run_dir: Path) -> list[str]:
    """Ok records whose GPUs did not read back at their own settings."""
    bad = []
    for e in of_type(run_dir, "experiment_finished"):
        rec = e["record"]
        if rec["status"] != "ok":
            continue
        params, applied = rec["params"], rec.get("gpu_settings") or {}
        want_sm = params["sm_clock_mhz"] or UNLOCKED_SM
        for index, back in sorted((applied.get("gpus") or {}).items()):
            if (
                back.get("power_limit_w") != params["power_limit_w"]
                or back.get("sm_clock_mhz") != want_sm
            ):
                bad.append(f"{rec['key']} {params} ran with GPU {index} at {back}")
        if not applied.get("gpus"):
            bad.append(f"{rec['key']}: no gpu_settings read-back in the record")
    return bad


# ---- one round -----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a round does, drawn before it starts (so the schedule depends on the seed only)."""

    mode: str
    delay: float  # start-up / any: seconds after the start; first apply / end: after the trigger
    in_restore: bool  # end: kill at the first settings change after the last record
    down: bool


def draw(rng: random.Random) -> Plan:
    mode = rng.choices([m for m, _ in MODES], [w for _, w in MODES])[0]
    delay = {
        "start-up": rng.uniform(0.1, 1.5),
        "first apply": rng.uniform(0.0, 0.08),
        "any": rng.uniform(0.3, 8.0),
        "end": rng.uniform(0.0, 0.7),
    }[mode]
    in_restore = rng.random() < 0.67
    down = rng.random() >= NO_DOWN
    return Plan(mode, delay, in_restore, down)


def drive(
    proc: subprocess.Popen[str],
    plan: Plan,
    c: E2ECampaign,
    keys: list[str],
    stub: Stub,
    state_dir: Path,
) -> bool:
    """Wait for the plan's moment and SIGKILL llem; False if it exited first."""
    start = time.monotonic()
    fired_at: float | None = None
    baseline: str | None = None  # end, in the restore: the settings file at the last record

    def trigger() -> bool:
        nonlocal fired_at, baseline
        now = time.monotonic()
        if plan.mode in ("start-up", "any"):
            return now - start >= plan.delay
        if fired_at is None:
            if plan.mode == "first apply":
                hit = any(
                    e.get("owner", {}).get("pid") == proc.pid
                    for e in _entries_quietly(state_dir).values()
                )
            else:
                hit = ok_keys(first_run(c)) >= set(keys)
                if hit:
                    baseline = settings_text(stub)
            if not hit:
                return False
            fired_at = now
        if plan.mode == "end" and plan.in_restore:
            return settings_text(stub) != baseline
        return now - fired_at >= plan.delay

    while proc.poll() is None:
        if trigger():
            kill9(proc)
            return True
        if time.monotonic() - start > ROUND_LIMIT_S:
            kill9(proc)
            raise RuntimeError(f"{c.name}: llem neither exited nor reached {plan.mode}")
        # the restore takes milliseconds: look closely once it is due
        time.sleep(0.003 if baseline is not None else 0.01)
    return False


def _entries_quietly(state_dir: Path) -> dict[str, Any]:
    try:
        return state_entries(state_dir)
    except (OSError, ValueError, KeyError):
        return {}


def phase_of_kill(
    c: E2ECampaign,
    sessions_before: int,
    pid: int,
    stderr: str,
    left: list[int],
    entries: dict[str, Any],
    keys: list[str],
) -> str:
    """Where in its session a kill landed, from the journal, the state file and the GPUs."""
    run_dir = first_run(c)
    evs = events(run_dir) if run_dir is not None else []
    starts = [i for i, e in enumerate(evs) if e["type"] == "run_started"]
    if len(starts) <= sessions_before:
        others = [u for u, e in entries.items() if e["owner"]["pid"] != pid]
        if "restored GPU" in stderr:
            return "start-up, after restoring leftovers"
        if others and len(left) < len(others):
            return "start-up, during the restore of leftovers"
        return "start-up"
    session = [e["type"] for e in evs[starts[-1] :]]
    mine = [u for u, e in entries.items() if e["owner"]["pid"] == pid]
    if "run_finished" in session:
        return "after run_finished"
    if "gpu_settings_restored" in session:
        return "after the restore was journaled"
    if run_dir is not None and not tally(run_dir, keys).lost:
        if not mine:
            return "end: restored, not yet journaled"
        if len(mine) < GPUS or len(left) < GPUS:
            return "end: during the restore"
        return "end: teardown, before the restore"
    if "experiment_started" not in session:
        return "containers starting"
    if "experiment_finished" not in session:
        # experiment_started is journaled before the apply: the session's first experiments
        return "first apply / first experiment" if mine else "first experiment, before its apply"
    return "experiments"


@dataclass
class Counts:
    gpu_checks: int = 0
    gpus_left_changed: int = 0
    kills_leaving_changed: int = 0
    restored_by_down: int = 0
    restored_by_next_run: int = 0
    no_down_rounds: int = 0
    wrong_originals: int = 0
    leaks: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)


def check_clean(
    c: E2ECampaign, stub: Stub, state_dir: Path, row: Row, n: Counts, when: str
) -> None:
    """Every GPU at its original, no state entry, no container."""
    n.gpu_checks += 1
    changed = gpus_changed(stub)
    if changed:
        n.gpus_left_changed += len(changed)
        row.fail(
            f"{c.name} {when}: GPUs left changed {changed}; state file "
            f"{json.dumps(state_entries(state_dir))}; settings file (last lines):\n"
            + "\n".join(settings_text(stub).splitlines()[-12:])
        )
    entries = state_entries(state_dir)
    if entries:
        row.fail(f"{c.name} {when}: state file still holds {json.dumps(entries)}")
    left = left_containers(c)
    if left:
        row.containers_left += len(left)
        row.fail(f"{c.name} {when}: containers left {left}")


def check_originals(entries: dict[str, Any], row: Row, n: Counts, when: str) -> None:
    """Each saved original is the GPU's true one."""
    for uuid, entry in entries.items():
        index = int(uuid[-12:])
        original = entry["original"]
        if original.get("power_limit_w") != ORIGINAL_MW[index] / 1000 or not original.get(
            "reset_sm_clocks"
        ):
            n.wrong_originals += 1
            row.fail(
                f"{when}: state entry {uuid} saved {original}, the GPU's original is "
                f"{ORIGINAL_MW[index] / 1000:g} W, unlocked"
            )


def check_campaign(c: E2ECampaign, keys: list[str], row: Row, n: Counts) -> bool:
    started = [run for run in c.run_dirs() if of_type(run, "run_started")]
    if len(started) != 1:
        row.fail(f"{c.name}: {len(started)} runs with run_started (resume must continue one)")
    if not started:
        row.lost += len(keys)
        return False
    t = tally(started[0], keys)
    row.lost += len(t.lost)
    row.duplicated += len(t.duplicated)
    ok = t.ok and len(started) == 1
    if t.lost or t.duplicated:
        row.fail(f"{c.name}: lost {t.lost}, duplicated {t.duplicated} ({started[0]})")
    if t.defects:
        row.fail(f"{c.name}: journal defects {t.defects}")
    if not t.finished:
        row.fail(f"{c.name}: run not finished")
    leaks = settings_leaks(started[0])
    if leaks:
        n.leaks += len(leaks)
        row.fail(f"{c.name}: experiments not at their settings: {leaks}")
        ok = False
    # a session that changed a GPU journals its restore, ok; one that ran nothing changed none
    evs = events(started[0])
    last = max(i for i, e in enumerate(evs) if e["type"] == "run_started")
    final = [e["type"] for e in evs[last:]]
    bad = [e for e in evs if e["type"] == "gpu_settings_restored" and e.get("ok") is not True]
    if bad or ("experiment_started" in final and "gpu_settings_restored" not in final):
        row.fail(f"{c.name}: a restore not ok, or the last session's not journaled: {bad}")
        ok = False
    return ok


def run(quick: bool = False, seed: int = 20261128) -> Row:
    kills_wanted = 6 if quick else 22
    rng = random.Random(seed + 29)
    row = Row(NAME, repeats=kills_wanted)
    n = Counts()
    t0 = time.monotonic()
    campaigns = 0
    with scratch("settings-kill9") as base:
        stub = two_gpus(base)
        state_dir = base / "llem-state"

        def make() -> tuple[E2ECampaign, list[str]]:
            c = settings_campaign(base, campaigns, stub, state_dir)
            keys = plan_keys_of(c)
            assert len(keys) == EXPERIMENTS, keys
            return c, keys

        c, keys = make()
        campaigns = 1
        kills_here, failures_before = 0, 0
        # a no-down round's leftovers: uuid -> index, for the next run to restore first
        pending_restore: dict[str, int] = {}

        def account(c: E2ECampaign, keys: list[str]) -> None:
            nonlocal kills_here, failures_before
            ok = check_campaign(c, keys, row, n)
            if ok and len(row.failures) == failures_before:
                row.passed += kills_here
            kills_here, failures_before = 0, len(row.failures)

        def check_restored_first(tag: str, reached: bool) -> None:
            nonlocal pending_restore
            if not pending_restore or not reached:
                return
            _, err = c.output(tag)
            missing = [
                f"GPU {i} ({u})"
                for u, i in pending_restore.items()
                if f"restored GPU {i} ({u})" not in err
            ]
            if missing:
                row.fail(f"{c.name} {tag}: the next run did not restore first {missing}:\n{err}")
            else:
                n.restored_by_next_run += len(pending_restore)
            pending_restore = {}

        try:
            kills = 0
            round_no = 0
            while kills < kills_wanted:
                round_no += 1
                tag = f"r{round_no}"
                plan = draw(rng)
                run_dir = first_run(c)
                sessions = len(of_type(run_dir, "run_started")) if run_dir else 0
                proc = c.start("run", c.file, "--resume", "--no-progress", tag=tag)
                killed = drive(proc, plan, c, keys, stub, state_dir)
                out, err = c.output(tag)
                if not killed:
                    code = proc.returncode
                    if code != 0 or not no_traceback(out, err):
                        row.fail(f"{c.name}: round {round_no} exited {code}: {err[-800:]}")
                    check_restored_first(tag, True)
                    check_clean(c, stub, state_dir, row, n, f"round {round_no} (exited {code})")
                    account(c, keys)
                    log(f"  {c.name} finished in round {round_no}; next campaign")
                    c.cleanup()
                    c, keys = make()
                    campaigns += 1
                    continue
                kills += 1
                kills_here += 1
                n.modes[
                    plan.mode + (" (in restore)" if plan.mode == "end" and plan.in_restore else "")
                ] += 1
                entries = state_entries(state_dir)
                left = changed_now(stub)
                check_originals(entries, row, n, f"{c.name} round {round_no}")
                run_dir = first_run(c)
                reached = run_dir is not None and len(of_type(run_dir, "run_started")) > sessions
                check_restored_first(tag, reached)
                phase = phase_of_kill(c, sessions, proc.pid, err, left, entries, keys)
                n.phases[phase] += 1
                if left:
                    n.kills_leaving_changed += 1
                how = "down" if plan.down else "no down"
                log(
                    f"  {c.name}: kill {kills} ({plan.mode}, {phase}); GPUs left changed "
                    f"{left}, {len(entries)} entr(ies); {how}"
                )
                if plan.down:
                    done = c.llem("down", c.file, timeout=180)
                    if done.returncode != 0 or not no_traceback(done.stdout, done.stderr):
                        row.fail(
                            f"{c.name}: down after round {round_no} exited "
                            f"{done.returncode}: {done.stderr[-800:]}"
                        )
                    n.restored_by_down += done.stdout.count("restored GPU")
                    pending_restore = {}
                    check_clean(c, stub, state_dir, row, n, f"down after round {round_no}")
                else:
                    n.no_down_rounds += 1
                    pending_restore = {u: int(u[-12:]) for u in entries}
                if run_dir is not None and of_type(run_dir, "run_finished"):
                    # killed after the run's end: it is finished (a --resume would start anew)
                    if not plan.down:
                        check_clean(c, stub, state_dir, row, n, f"run ended, round {round_no}")
                    account(c, keys)
                    log(f"  {c.name} finished before kill {kills}; next campaign")
                    c.cleanup()
                    c, keys = make()
                    campaigns += 1
            run_dir = first_run(c)
            if run_dir is not None:
                row.notes.append(
                    f"{c.name}: {len(ok_keys(run_dir))} of {len(keys)} ok when the last kill "
                    f"came, {len(of_type(run_dir, 'run_started'))} sessions"
                )
            done = c.llem("run", c.file, "--resume", "--no-progress", timeout=300)
            (c.root / "final.err").write_text(done.stderr)
            if done.returncode != 0 or not no_traceback(done.stdout, done.stderr):
                row.fail(f"{c.name}: final --resume exited {done.returncode}: {done.stderr[-800:]}")
            if pending_restore:
                missing = [
                    u
                    for u, i in pending_restore.items()
                    if f"restored GPU {i} ({u})" not in done.stderr
                ]
                if missing:
                    row.fail(f"{c.name}: the final run did not restore first {missing}")
                else:
                    n.restored_by_next_run += len(pending_restore)
            check_clean(c, stub, state_dir, row, n, "after the final --resume")
            account(c, keys)
        finally:
            c.cleanup()
    row.seconds = time.monotonic() - t0
    phases = ", ".join(f"{k} {v}" for k, v in sorted(n.phases.items()))
    modes = ", ".join(f"{k} {v}" for k, v in sorted(n.modes.items()))
    row.notes.append(
        f"{campaigns} campaign(s) of {EXPERIMENTS} experiments (lanes: 2 and none alternating), "
        f"seed {seed + 29}; moments drawn: {modes}; kills landed: {phases}"
    )
    row.notes.append(
        f"{n.kills_leaving_changed} of {kills_wanted} kills left a GPU changed; "
        f"{n.no_down_rounds} rounds with no down; GPUs restored by down {n.restored_by_down}, "
        f"by the next run {n.restored_by_next_run}; {n.gpu_checks} checks: GPUs left changed "
        f"{n.gpus_left_changed}, wrong saved originals {n.wrong_originals}, "
        f"records not at their settings {n.leaks}"
    )
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "settings_kill9", *sys.argv[1:]]))
