"""Scenario 3: the Docker daemon dies mid-run, comes back, and ``--resume`` finishes the run.

At a random (seeded) moment of a run the daemon is stopped — SIGKILL (a crash) and SIGTERM (a
``systemctl stop``) in turn. Checked: llem exits 3 or 4 within a bound (no hang) without a
traceback; the journal replays with no defect and every ``experiment_finished`` line it holds is
read back (no record lost, none doubled); after the daemon is back, ``--resume`` exits 0 with
every key ok exactly once and nothing left running.

By default the daemon killed is a private one (own socket, data and exec roots, reached through
``DOCKER_HOST``) so that other users of the machine's engine (benchmarks, tests running beside)
are not taken down with it; ``LLEM_CHAOS_MAIN_DAEMON=1`` kills the machine's dockerd instead and
restarts it with ``scripts/engine.sh``. Either way the machine's engine is checked healthy (with
``scripts/engine.sh``) before the scenario returns.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from chaos.common import (
    REPO,
    TEST_IMAGE,
    Row,
    log,
    new_campaign,
    no_traceback,
    of_type,
    plan_keys_of,
    project_containers,
    tally,
    wait_for,
)
from llem_cli.runs.state import replay

NAME = "Docker daemon stopped mid-run"
#: how long llem may take to notice the daemon is gone and exit
EXIT_BOUND_S = 180


def _docker_ok(env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


class PrivateDaemon:
    """A dockerd of our own: socket, data and exec roots under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "d.sock"
        self.pidfile = root / "d.pid"
        self.exec_root = root / "x"
        self.env = {"DOCKER_HOST": f"unix://{self.sock}"}

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _clear_leftovers(self) -> None:
        """What a killed dockerd leaves: pid file, socket, and the containerd it started."""
        cdir = self.exec_root / "containerd"
        try:
            cpid = int((cdir / "containerd.pid").read_text().strip())
        except (OSError, ValueError):
            cpid = 0
        if cpid and _alive(cpid):
            os.kill(cpid, signal.SIGTERM)
            _wait_gone(cpid, 10)
        for path in (
            self.pidfile,
            self.sock,
            cdir / "containerd.pid",
            cdir / "containerd.sock",
            cdir / "containerd.sock.ttrpc",
            cdir / "containerd-debug.sock",
        ):
            path.unlink(missing_ok=True)

    def start(self) -> None:
        if self.pid() and _docker_ok(self.env):
            return
        self._clear_leftovers()
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "dockerd.log", "a") as logf:
            subprocess.Popen(
                [
                    "dockerd",
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.exec_root),
                    "-H",
                    self.env["DOCKER_HOST"],
                    "--pidfile",
                    str(self.pidfile),
                    "--iptables=false",
                    "--bridge=none",
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,
            )
        wait_for(lambda: _docker_ok(self.env), 90, "the private dockerd", poll=0.3)
        if (
            not _docker_ok({**self.env})
            or subprocess.run(
                ["docker", "image", "inspect", TEST_IMAGE],
                capture_output=True,
                check=False,
                env={**os.environ, **self.env},
            ).returncode
        ):
            save = subprocess.Popen(["docker", "save", TEST_IMAGE], stdout=subprocess.PIPE)
            subprocess.run(
                ["docker", "load"],
                stdin=save.stdout,
                capture_output=True,
                check=True,
                env={**os.environ, **self.env},
            )
            save.wait(timeout=60)

    def stop(self, sig: int) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, sig)
        _wait_gone(pid, 60)

    def close(self) -> None:
        self.stop(signal.SIGTERM)
        self._clear_leftovers()
        unmount_under(self.root)  # dockerd bind-mounts its data root onto itself
        shutil.rmtree(self.root, ignore_errors=True)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below ``root``, deepest first."""
    prefix = str(root.resolve())
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted(
        (p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True
    ):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


class MainDaemon:
    """The machine's dockerd; restarted with scripts/engine.sh."""

    env: dict[str, str] = {}

    def pid(self) -> int | None:
        try:
            pid = int(Path("/var/run/docker.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self) -> None:
        subprocess.run(["bash", str(REPO / "scripts/engine.sh")], check=True, timeout=300)

    def stop(self, sig: int) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, sig)
            _wait_gone(pid, 60)

    def close(self) -> None:
        self.start()


def ensure_main_engine() -> None:
    subprocess.run(["bash", str(REPO / "scripts/engine.sh")], check=False, timeout=300)


def one(
    daemon: PrivateDaemon | MainDaemon, base: Path, index: int, sig: int, delay: float, row: Row
) -> bool:
    c = new_campaign(base, f"dd-{index}")
    c.env.update(daemon.env)
    c.write(
        {"app": {"command": ["sh", "-c", "sleep 0.5"]}},
        grid={"i": list(range(1, 11))},
        execution={"cycles": 2},
    )
    keys = plan_keys_of(c)
    good = True
    try:
        proc = c.start("run", c.file, "--no-progress")
        run_dir = c.wait_run_dir(60)
        time.sleep(delay)
        if proc.poll() is not None:
            row.fail(f"{c.name}: the run ended before the daemon was stopped (delay {delay:.1f}s)")
            return False
        finished_before = len(of_type(run_dir, "experiment_finished"))
        t_stop = time.monotonic()
        daemon.stop(sig)
        try:
            code = proc.wait(timeout=EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            row.fail(f"{c.name}: llem still running {EXIT_BOUND_S}s after the daemon stopped")
            code = None
        took = time.monotonic() - t_stop
        out, err = c.output()
        errors = [line for line in err.splitlines() if line.strip()]
        log(
            f"  {c.name}: daemon {signal.Signals(sig).name} after {delay:.1f}s "
            f"({finished_before} finished); llem exit {code} in {took:.1f}s: "
            f"{errors[-1] if errors else ''}"
        )
        if code not in (3, 4):
            row.fail(f"{c.name}: exit {code}, expected 3 or 4: {err[-400:]}")
            good = False
        if not no_traceback(out, err):
            row.fail(f"{c.name}: traceback in llem's output")
            good = False
        state = replay(run_dir / "journal.jsonl")
        raw = (run_dir / "journal.jsonl").read_text().count('"type":"experiment_finished"')
        parsed = len(of_type(run_dir, "experiment_finished"))
        if state.defects or raw != parsed or parsed < finished_before:
            row.fail(f"{c.name}: journal defects {state.defects}, {raw} lines / {parsed} read")
            good = False
        # the environment check before each failed record must have kept the outage out of the
        # journal: no record of this session may blame the experiment for the daemon's stop
        blamed = [
            e["record"]["key"]
            for e in of_type(run_dir, "experiment_finished")
            if e["record"]["status"] != "ok"
        ]
        if blamed:
            row.notes.append(f"{c.name}: failed records written during the outage: {blamed}")
        daemon.start()
        again = c.llem("run", c.file, "--resume", "--no-progress", timeout=300)
        if again.returncode != 0 or not no_traceback(again.stdout, again.stderr):
            row.fail(f"{c.name}: --resume exited {again.returncode}: {again.stderr[-400:]}")
            good = False
        t = tally(run_dir, keys)
        if not t.ok:
            recs = replay(run_dir / "journal.jsonl").records
            why = {k: (recs[k].status, recs[k].error) for k in t.lost if k in recs}
            row.fail(f"{c.name}: after resume lost {why or t.lost} dup {t.duplicated} {t.defects}")
            good = False
        row.lost += len(t.lost)
        row.duplicated += len(t.duplicated)
        left = project_containers(c.project, daemon.env)
        row.containers_left += len(left)
        return good
    finally:
        daemon.start()
        c.cleanup()


def run(quick: bool = False, seed: int = 20261128) -> Row:
    repeats = 2 if quick else 10
    rng = random.Random(seed + 3)
    row = Row(NAME, repeats=repeats)
    t0 = time.monotonic()
    main = bool(os.environ.get("LLEM_CHAOS_MAIN_DAEMON"))
    base = Path(f"/tmp/llem-chaos-dd-{os.getpid()}")  # short: dockerd's socket paths
    daemon: PrivateDaemon | MainDaemon = MainDaemon() if main else PrivateDaemon(base / "d")
    try:
        daemon.start()
        for index in range(repeats):
            sig = signal.SIGKILL if index % 2 == 0 else signal.SIGTERM
            if one(daemon, base / "c", index, sig, rng.uniform(0.3, 8.0), row):
                row.passed += 1
    finally:
        daemon.close()
        ensure_main_engine()
        shutil.rmtree(base, ignore_errors=True)
    row.seconds = time.monotonic() - t0
    row.notes.append(
        f"{'the machine' if main else 'a private'} dockerd, SIGKILL and SIGTERM in turn, "
        f"seed {seed + 3}; llem must exit within {EXIT_BOUND_S}s"
    )
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "daemon", *sys.argv[1:]]))
