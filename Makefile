# One entry point for set-up, tests, the demo and the reproduction workflows.
# Uses the active virtualenv/conda env if there is one, else creates ./.venv.
SHELL := /bin/bash
ifdef VIRTUAL_ENV
  PY := $(VIRTUAL_ENV)/bin/python
else ifdef CONDA_PREFIX
  PY := $(CONDA_PREFIX)/bin/python
else
  PY := .venv/bin/python
endif
STAMP := $(dir $(PY)).mtl-installed
BENCH ?= synthetic
METHOD ?= db_mtl
SEEDS ?= 0,1,2
LAUNCHER ?= local
# extra arguments appended to every target that runs something: Hydra overrides for the runs
# (make sweep-beta ARGS="trainer.epochs=2 logger=none"), script options for toy and bench-step
ARGS ?=

.PHONY: help install test test-slow test-gpu demo train docs clean data-nyuv2 data-cityscapes data-office31 data-officehome data-qm9

# `make help`: every target with its `## ` line (the default goal)
help:
	@grep -E '^[a-zA-Z0-9%_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## /\1\t/' | \
	  awk -F'\t' '{printf "  make %-22s %s\n", $$1, $$2}'
	@echo "  variables: BENCH=$(BENCH) METHOD=$(METHOD) SEEDS=$(SEEDS) LAUNCHER=$(LAUNCHER) ARGS=\"...\" (extra overrides)"

$(PY):
	python3 -m venv .venv

# Editable install with the dev extras; re-runs when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## editable install with the dev extras (creates ./.venv without an active env)

test: install ## the test suite (not the slow or GPU tests)
	$(PY) -m pytest -q

test-slow: install ## the slow tests only
	$(PY) -m pytest -q -m slow

# GPU smoke test (~5 min on one H100): no install step, so it runs on a machine's own Python, e.g.
# `make test-gpu PY=python3` after scripts/gpu_wheels.sh (see tests/test_gpu.py and the README).
test-gpu: ## the GPU smoke tests (~5 min on one H100)
	$(PY) -m pytest -q -m gpu tests/test_gpu.py tests/test_gpu_campaign.py

# GPU proof of issue #22 (<= 8 min on one GPU; refuses without CUDA): profile, step table, QM9 packed
# throughput + training + kill-and-resume -> results/bench/gpu_proof_<gpu>.{csv,md}. Wheels and full
# QM9 prepared by scripts/gpu_proof_prepare.sh; `make gpu-proof-dry-run` rehearses it on the CPU.
MTL_PROOF_OUT ?= results/bench
.PHONY: gpu-proof gpu-proof-dry-run flops
gpu-proof: ## the GPU proof of issue #22 (<= 8 min on one GPU; refuses without CUDA)
	$(PY) -m mtl.perf.proof --qm9-file $${QM9_FILE:-.gpu_proof/qm9.pt} --out-dir $(MTL_PROOF_OUT) $(ARGS)

gpu-proof-dry-run: ## rehearse gpu-proof on the CPU
	$(PY) -m mtl.perf.proof --dry-run --out-dir /tmp/gpu_proof_dry_run $(ARGS)

# FLOP counts of every workload at its published size (meta device) -> results/bench/flops.csv
flops: ## FLOP counts of every workload -> results/bench/flops.csv
	$(PY) -m mtl.perf.flops $(ARGS)

demo: install ## the CPU demo: qm9_small methods, table and curves
	$(PY) scripts/demo.py $(ARGS)

# The documentation site (docs/ -> site/), built strictly: a broken link or reference fails. The
# per-method and per-benchmark pages are generated from the code at build time (mkdocs_hooks.py).
docs: install ## build the documentation site strictly (docs/ -> site/)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

train: install ## one run: BENCH, METHOD (+ ARGS overrides)
	$(PY) -m mtl.train benchmark=$(BENCH) method=$(METHOD) $(ARGS)

# ---- data (users with internet; offline they print the manual steps) -----------------------
data-nyuv2: install ## download and check the nyuv2 data
	$(PY) scripts/download_data.py nyuv2 --root $${NYUV2_ROOT:-data/nyuv2}

data-cityscapes: install ## download and check the cityscapes data
	$(PY) scripts/download_data.py cityscapes --root $${CITYSCAPES_ROOT:-data/cityscapes}

data-office31: install ## download and check the office31 data
	$(PY) scripts/download_data.py office31 --root $${OFFICE31_ROOT:-data/office31}

data-officehome: install ## download and check the officehome data
	$(PY) scripts/download_data.py officehome --root $${OFFICEHOME_ROOT:-data/officehome}

# QM9 needs no download: the cache is built from the qm9pack package (reproduce-qm9 also does it first)
data-qm9: install ## build the QM9 cache from the qm9pack package
	$(PY) scripts/download_data.py qm9 --root $${QM9_ROOT:-data/qm9}

# ---- reproduction workflows (relaunch-safe: finished runs are skipped, interrupted ones resume) --
# (reproduce-<bench> targets are a pattern rule below: make skips pattern rules for .PHONY names)
.PHONY: tables sweep-beta sweep-alpha compare reproduce-all reproduce-demo bench-step toy front tune

tables: install ## regenerate results/tables/ from the run directories
	$(PY) scripts/tables.py $(ARGS)

sweep-beta: install ## DB-MTL's beta study on BENCH (Fig. 5): CSV + box plot
	$(PY) scripts/sweep.py beta --bench $(BENCH) --seeds $(SEEDS) --launcher $(LAUNCHER) $(ARGS)

sweep-alpha: install ## DB-MTL's alpha_k study on BENCH (Fig. 6): CSV + box plot
	$(PY) scripts/sweep.py alpha --bench $(BENCH) --seeds $(SEEDS) --launcher $(LAUNCHER) $(ARGS)

compare: install ## train METHOD on BENCH x SEEDS and rank it among the baselines
	$(PY) scripts/compare.py --method $(METHOD) --bench $(BENCH) --seeds $(SEEDS) --launcher $(LAUNCHER) $(ARGS)

# equal tuning budget: Optuna (Hydra sweeper) over the lr + configs/tune/<METHOD>.yaml for TRIALS trials,
# chosen on val only; then the best on SEEDS (run tag _tuned<TRIALS>); results/tune/<bench>/<method>.yaml
TRIALS ?= 8
tune: install ## equal-budget Optuna tuning of METHOD on BENCH (val only), then SEEDS
	$(PY) scripts/tune.py --method $(METHOD) --bench $(BENCH) --trials $(TRIALS) --seeds $(SEEDS) --launcher $(LAUNCHER) $(ARGS)

# the scalarization front: method=fixed over a grid of weights x SEEDS, every method's runs against it
# (METHODS=ew,mgda,... trains those too); results/front/<bench>_front.{csv,png}
# (FRONT_SEEDS: seeds of the fixed-weight runs, default SEEDS)
METHODS ?=
FRONT_SEEDS ?= $(SEEDS)
front: install ## the fixed-weight scalarization front on BENCH, every method against it
	$(PY) scripts/front.py --bench $(BENCH) --seeds $(SEEDS) --front-seeds $(FRONT_SEEDS) --methods "$(METHODS)" --launcher $(LAUNCHER) $(ARGS)

# reproduce-<bench>: every method of configs/experiment/reproduce_<bench>.yaml x SEEDS, plus STL, then the table
# (reproduce-nyuv2-segnet -> reproduce_nyuv2_segnet)
reproduce-%: install ## reproduce-<bench>: every method x SEEDS + STL, then the table
	$(PY) scripts/reproduce.py $(subst -,_,$*) --seeds $(SEEDS) --launcher $(LAUNCHER) $(ARGS)

reproduce-all: reproduce-nyuv2 reproduce-nyuv2-segnet reproduce-cityscapes reproduce-qm9 reproduce-office31 reproduce-officehome ## every paper table (GPU campaigns)

reproduce-demo: install ## the CPU-scale reproduction (synthetic + qm9_small)
	$(PY) scripts/reproduce.py demo --launcher $(LAUNCHER) $(ARGS)

bench-step: install ## time one training step of every method (ARGS: script options)
	$(PY) scripts/bench_step.py --workload resnet18_office $(ARGS)

toy: install ## the toy-problem trajectory plots (ARGS: script options, e.g. --steps 500)
	$(PY) scripts/toy_trajectories.py $(ARGS)

clean: ## delete every run and generated table (results/runs, tables, sweeps, compare; multirun/, outputs/); committed results stay
	rm -rf results/runs results/tables results/sweeps results/compare multirun outputs .pytest_cache
