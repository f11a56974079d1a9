# The README's two commands. Each creates .venv with pip and installs the project when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch/torchvision are pinned to the wheels that ship on this project's machines (a CUDA build
# that also runs on CPU); pip takes them from local disk there, from PyPI elsewhere.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-slow lint tables results bench continual compare

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# FT vs LDIFS (and FT at a lower learning rate) on the shipped tiny CLIP; results in runs/demo/.
demo: $(STAMP)
	$(BIN)/ldifs demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto

# The tests marked slow (multi-process FSDP2, installing a wheel and running every shipped config).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# Every continual method on the embedded sequence (configs/continual/demo.yaml), same budget:
# runs/continual-comparison/ (comparison.json, metrics.csv, foreign.png, one folder per method).
continual: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m ldifs_lightning.continual.comparison --out runs/continual-comparison

# Every fine-tuning method on the four embedded domains, knobs at several values, 3 seeds, two
# worker processes (the README's "Measured" line says how long it took): runs/compare/
# (results.json, table.md, frontier plots).
compare: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/ldifs compare --workers 2 --out runs/compare

# Re-render the measured tables of README.md, docs/demo.md and the model card from the committed
# JSON (docs/results/, pretrained/card.json, benchmarks/results/); `--check` lists stale ones.
tables: $(STAMP)
	$(BIN)/python -m ldifs_lightning.reporting.render

# Re-measure what those tables quote (demo, lambda sweep, model card, continual sequence, method
# comparison; over an hour on 2 cores) and re-render them. The benchmarks are timings: re-run
# them by hand on an idle machine (benchmarks/README.md).
results: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/ldifs demo --out runs/demo
	OMP_NUM_THREADS=1 $(BIN)/ldifs demo --sweep --out runs/sweep
	mkdir -p docs/results
	cp runs/demo/summary.json docs/results/demo.json
	cp runs/sweep/summary.json docs/results/lambda_sweep.json
	OMP_NUM_THREADS=1 $(BIN)/python -m ldifs_lightning.pretrained.build --card
	$(MAKE) continual
	$(MAKE) compare
	mkdir -p docs/results/compare
	cp runs/compare/results.json docs/results/compare.json
	cp runs/compare/frontier*.png docs/results/compare/
	mkdir -p docs/results/continual
	cp runs/continual-comparison/comparison.json docs/results/continual.json
	cp runs/continual-comparison/foreign.png docs/results/continual/foreign.png
	for run in runs/continual-comparison/*/; do \
	  cp $$run/matrix.png docs/results/continual/$$(basename $$run).png; done
	$(BIN)/python -m ldifs_lightning.reporting.render

# Training-step time and peak memory of every method as ratios to FT, and the forgetting callback's
# cost next to a demo epoch (under 10 minutes on 2 cores): writes benchmarks/results/step_cost.json
# and re-renders the README. The slower benchmarks run by hand (benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/step_cost.py
	$(BIN)/python -m ldifs_lightning.reporting.render
