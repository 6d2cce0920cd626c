# llem: every target does its own set-up (venv, Docker engine), so each works on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help venv engine slurm lint unit test demo bench chaos check-engines clean

help:
	@echo "make demo   - run the demo campaign end to end (starts a local Docker engine if needed)"
	@echo "make unit   - the tests that need no Docker engine (tests/unit, under a minute)"
	@echo "make test   - ruff, mypy + the whole test suite against a real Docker engine and Slurm"
	@echo "make slurm  - a local one-node Slurm cluster with 4 stand-in GPUs (scripts/slurm.sh)"
	@echo "make bench  - overhead benchmarks (prints ratios)"
	@echo "make chaos  - fault-injection suite (CHAOS_ARGS=--quick for fewer repeats)"
	@echo "make check-engines - the shipped engine commands' flags against the pinned engines' sources"

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

engine:
	bash scripts/engine.sh --with-compose-v1

# munged, slurmctld, slurmd on this host (root, Debian: apt installs them); tests/slurm needs it
slurm:
	bash scripts/slurm.sh

lint: venv
	$(VENV)/bin/ruff check llem_cli llem_testkit tests bench chaos
	$(VENV)/bin/mypy

# no Docker engine needed (tests/docker, tests/e2e and tests/slurm hold what does: marker docker)
unit: venv
	$(VENV)/bin/pytest -q tests/unit

# chromium: tests/e2e/test_report_browser.py opens llem report's HTML in it (scripts/chromium.sh)
test: venv engine slurm lint
	bash scripts/chromium.sh
	$(VENV)/bin/pytest -q

# validate, plan, run, status, results, report (its path printed last); without an NVIDIA GPU
# the run measures a simulated one, marked as such (scripts/demo.sh; LLEM_DEMO_GPU=real|simulated)
demo: venv
	bash scripts/engine.sh --demo-image
	bash scripts/demo.sh $(VENV)

# bench-only profilers (not imported by any test or bench script, so not in setup.cfg)
BENCH_TOOLS := $(VENV)/.bench-tools-stamp
$(BENCH_TOOLS): $(STAMP)
	$(VENV)/bin/pip install -q --disable-pip-version-check pyinstrument py-spy
	touch $(BENCH_TOOLS)

bench: venv engine $(BENCH_TOOLS)
	-$(PY) bench/bench_startup_plan.py
	-$(PY) bench/bench_exec_overhead.py
	-$(PY) bench/bench_run_overhead.py
	-$(PY) bench/bench_journal.py
	-$(PY) bench/bench_resume_results.py
	-$(PY) bench/bench_against_revision.py
	-$(PY) bench/bench_lanes.py
	-$(PY) bench/bench_serving.py

# fault injection (docs/reliability.md): kill -9, docker kill (also of 4-lane runs), daemon stop,
# full disk, fuzzing, secrets; one table row per scenario, non-zero exit on any failure.
# CHAOS_ARGS=--quick for a smoke run
chaos: venv engine slurm
	$(PY) -m chaos.run_all $(CHAOS_ARGS)

# the shipped engine commands' options, looked up in the pinned engines' own sources (no GPU, no
# Docker): each engine's wheel without dependencies into .cache/engines (vLLM's ~415 MB, once);
# the output replaces the last one in docs/engines.md. Exit 1 on a missing flag.
check-engines: venv
	$(PY) scripts/check_engines.py --update-doc docs/engines.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
