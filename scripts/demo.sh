#!/usr/bin/env bash
# make demo's steps: validate, plan, run, status, results, report of campaigns/demo.yaml; the
# report's path is the last line printed.
#
#   bash scripts/demo.sh VENV
#
# GPU: with a working nvidia-smi (an NVIDIA driver) the run measures the real GPU. Without one
# it measures a simulated GPU: llem's stand-in NVML (llem_testkit/nvml_stub/simulated.py) goes
# on LD_LIBRARY_PATH for this script's commands only, and llem marks every record
# measurement.simulated (llem results says so above its table, the report too). LLEM_DEMO_GPU=real
# or =simulated forces the choice.
set -euo pipefail

VENV=${1:-.venv}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
LLEM=$VENV/bin/llem
PY=$VENV/bin/python
CAMPAIGN=campaigns/demo.yaml

mode=${LLEM_DEMO_GPU:-}
if [ -z "$mode" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        mode=real
    else
        mode=simulated
    fi
fi
case $mode in
real) echo "demo: measuring the real GPU (nvidia-smi found)" ;;
simulated)
    eval "$("$PY" -m llem_testkit.nvml_stub.simulated --dir "$REPO/.cache/simulated-gpu")"
    echo "demo: no NVIDIA GPU here: measuring a SIMULATED GPU (llem's stand-in NVML)"
    ;;
*)
    echo "demo: LLEM_DEMO_GPU must be real or simulated, not $mode" >&2
    exit 2
    ;;
esac
# the busy folder the gpu-sim service mounts (made here so Docker does not make it as root)
mkdir -p "$REPO/.cache/simulated-gpu/busy"

"$LLEM" validate "$CAMPAIGN"
"$LLEM" plan "$CAMPAIGN"
"$LLEM" run "$CAMPAIGN"
"$LLEM" status "$CAMPAIGN"
"$LLEM" results "$CAMPAIGN" --group-by backend,size

run_dir=$("$PY" - <<'PY'
from pathlib import Path
from llem_cli.runs.layout import list_runs, run_id_sort_key
runs = list_runs(Path("results"), "demo")
run = max(runs, key=lambda r: run_id_sort_key(r.run_id) or ("", 0), default=None)
print(run.root if run is not None else "")
PY
)
[ -n "$run_dir" ] || { echo "demo: no run under results/" >&2; exit 1; }
report=$REPO/results/demo-report.html
"$LLEM" report "$run_dir" -o "$report"
echo "demo: report: $report"
