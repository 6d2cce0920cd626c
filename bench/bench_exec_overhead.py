"""Per-call overhead of an experiment exec through the ContainerManager.

Runs N no-op experiments (``true``) through ``ContainerManager.exec`` (output streamed to log files,
as real experiments are) and, interleaved in the same run, the bare commands it is compared with:
``docker compose exec -T <svc> true`` and ``docker compose run --rm <svc> true``. Prints medians
and ratios. Target (issue 3): ManagerExec within 1.3x of the bare compose exec.

    .venv/bin/python bench/bench_exec_overhead.py [-n 30] [--image llem-test-busybox:latest]

Needs a Docker engine, Compose and the image (scripts/engine.sh).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from llem_cli.docker import ContainerManager
from llem_testkit import TEST_IMAGE

COMPOSE = """\
services:
  bench:
    image: {image}
    network_mode: none
"""


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bare(argv: list[str]) -> None:
    subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="experiments (default 30)")
    parser.add_argument("--run-n", type=int, default=5, help="`compose run --rm` calls (slow)")
    parser.add_argument("--image", default=TEST_IMAGE)
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="llem-bench-") as tmp:
        root = Path(tmp)
        compose = root / "compose.yml"
        compose.write_text(COMPOSE.format(image=args.image))
        run_dir = root / "run"
        with ContainerManager(
            f"llem-bench-{tag}", [compose], run_id=f"bench{tag}", run_dir=run_dir,
            services=["bench"],
        ) as mgr:  # fmt: skip
            t_up = timed(lambda: mgr.start("bench"))
            bare_exec = mgr.project.exec("bench", ["true"])
            bare_run = [*mgr.project.base(), "run", "--rm", "-T", "bench", "true"]
            cid = mgr.container_id("bench")
            docker_exec = ["docker", "exec", cid or "missing", "true"]

            def manager_exec(i: int) -> None:
                exp = run_dir / "experiments" / f"e{i}"
                out = mgr.exec(
                    "bench", ["true"], env={"LLEM_EXPERIMENT_KEY": f"e{i}"}, timeout_s=120,
                    stdout_path=exp / "stdout.log", stderr_path=exp / "stderr.log",
                )  # fmt: skip
                if not out.ok:
                    raise SystemExit(f"experiment failed: {out.status} {out.detail}")

            for _ in range(2):  # warm up caches on both paths
                bare(bare_exec)
                manager_exec(-1)
            times: dict[str, list[float]] = {
                "ManagerExec": [], "ManagerProbe": [], "ComposeExec": [], "DockerExec": [],
                "ComposeRunRm": [],
            }  # fmt: skip
            for i in range(args.n):
                # alternate the order so drift and caching do not favour one side
                pair = [
                    ("ManagerExec", lambda i=i: manager_exec(i)),
                    ("ComposeExec", lambda: bare(bare_exec)),
                ]
                for name, fn in pair if i % 2 == 0 else reversed(pair):
                    times[name].append(timed(fn))
                times["ManagerProbe"].append(timed(lambda: mgr.probe("bench")))
                times["DockerExec"].append(timed(lambda: bare(docker_exec)))
                if i < args.run_n:
                    times["ComposeRunRm"].append(timed(lambda: bare(bare_run)))
            t_down = timed(mgr.teardown)

    ref = statistics.median(times["ComposeExec"])
    print(f"up --wait: {t_up:.2f}s   teardown: {t_down:.2f}s   n={args.n}")
    print(f"{'call':<14}{'median s':>10}{'p90 s':>9}{'vs ComposeExec':>16}")
    for name, values in times.items():
        med = statistics.median(values)
        p90 = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
        print(f"{name:<14}{med:>10.3f}{p90:>9.3f}{med / ref:>15.2f}x")
    ratio = statistics.median(times["ManagerExec"]) / ref
    verdict = "ok" if ratio <= 1.3 else "OVER TARGET"
    print(f"ManagerExec / ComposeExec = {ratio:.2f}x (target <= 1.30x): {verdict}")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
