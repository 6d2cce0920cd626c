"""Scenario 6: secrets in llem's environment never reach its output or the run directory.

llem runs with ``HF_TOKEN`` and ``MY_API_TOKEN`` set; the compose service passes them through
(``environment: [HF_TOKEN, MY_API_TOKEN]``). One experiment prints its whole environment and
succeeds; another echoes the token on stderr and fails, so the stderr tail reaches the record's
``error`` field. Each surface is one repeat, passed when neither token appears in it:
``--dry-run`` output, ``-v run`` output, ``run --json`` output, ``status``, ``results`` (table,
csv, json), and every file of the run directories except the experiments' own ``stdout.log`` /
``stderr.log`` (the user's program printed its environment there: that is the program's output,
kept as written).
"""

from __future__ import annotations

import time

from chaos.common import (
    Row,
    iter_files,
    log,
    new_campaign,
    no_traceback,
    project_containers,
    scratch,
)

NAME = "secrets (HF_TOKEN) never written"
TOKENS = {"HF_TOKEN": "hf_chaosSecret0123456789abcdef", "MY_API_TOKEN": "sk-chaos-api-987654321"}


def run(quick: bool = False, seed: int = 20261128) -> Row:
    row = Row(NAME)
    t0 = time.monotonic()
    with scratch("secrets") as base:
        c = new_campaign(base, "secrets")
        c.write(
            {
                "app": {
                    "command": [
                        "sh",
                        "-c",
                        'env; if [ {mode} = leak ]; then echo "auth failed for $HF_TOKEN '
                        '($MY_API_TOKEN)" >&2; exit 3; fi',
                    ],
                    "env": {"HF_HUB_OFFLINE": "1"},
                }
            },
            services={"app": {"environment": list(TOKENS)}},
            grid={"mode": ["quiet", "leak"]},
        )
        surfaces: dict[str, str] = {}
        try:
            dry = c.llem("run", c.file, "--dry-run", env=TOKENS)
            surfaces["--dry-run output"] = dry.stdout + dry.stderr
            done = c.llem("-v", "run", c.file, "--no-progress", env=TOKENS)
            surfaces["-v run output"] = done.stdout + done.stderr
            if done.returncode != 1:  # one experiment fails on purpose
                row.fail(f"-v run exited {done.returncode}, expected 1: {done.stderr[-300:]}")
            js = c.llem("run", c.file, "--json", env=TOKENS)
            surfaces["run --json output"] = js.stdout + js.stderr
            runs = c.run_dirs()
            st = c.llem("-v", "status", runs[0], env=TOKENS)
            surfaces["status output"] = st.stdout + st.stderr
            for fmt in ("table", "csv", "json"):
                res = c.llem("results", runs[0], "--format", fmt, env=TOKENS)
                surfaces[f"results --format {fmt}"] = res.stdout + res.stderr
            for run_dir in runs:
                for path in iter_files(run_dir):
                    rel = path.relative_to(run_dir)
                    if rel.parts[0] == "experiments" and path.name in ("stdout.log", "stderr.log"):
                        continue
                    surfaces[f"file {run_dir.name}/{rel}"] = path.read_text(errors="replace")
            # the experiment really saw the token (else the test would prove nothing)
            seen = [
                p
                for p in iter_files(runs[0])
                if p.name == "stdout.log" and TOKENS["HF_TOKEN"] in p.read_text()
            ]
            if not seen:
                row.fail("the experiments never saw HF_TOKEN: the scenario is void")
            row.containers_left += len(project_containers(c.project))
        finally:
            c.cleanup()
    for surface, text in surfaces.items():
        row.repeats += 1
        leaked = [name for name, value in TOKENS.items() if value in text]
        if leaked:
            row.fail(f"{surface}: holds {leaked}")
        elif not no_traceback(text):
            row.fail(f"{surface}: traceback")
        else:
            row.passed += 1
    log(f"  {len(surfaces)} surfaces checked")
    row.notes.append(
        f"{len(surfaces)} surfaces: outputs of dry-run, -v run, --json run, status, results x3; "
        f"{len(surfaces) - 7} files of the run directories"
    )
    row.seconds = time.monotonic() - t0
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "secrets", *sys.argv[1:]]))
