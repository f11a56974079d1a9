# The README's two commands. Each creates .venv with pip and installs the project when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch/torchvision are pinned to the wheels that ship on this project's machines (a CUDA build
# that also runs on CPU); pip takes them from local disk there, from PyPI elsewhere.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# FT vs LDIFS (and FT at a lower learning rate) on the shipped tiny CLIP; results in runs/demo/.
demo: $(STAMP)
	$(BIN)/python -m ldifs_lightning.demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
