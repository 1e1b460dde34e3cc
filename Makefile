# Two commands on a fresh machine:  make demo   and   make test
# Both create .venv on first use. PyTorch is pinned to the CPU build this machine provides;
# on a GPU machine install the CUDA build of torch into .venv first and it is kept.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Where the data sets live. Defaults to ../shared/data when it exists (this project's
# read-only copy of the official files); otherwise vaelab downloads to ~/.cache/vaelab.
export VAELAB_DATA_DIR ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)
DEMO_RUN ?= runs/demo

.PHONY: demo test lint venv clean bench reproductions-table

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/vaelab train --preset pytorch-examples --out $(DEMO_RUN) --overwrite
	$(BIN)/vaelab evaluate $(DEMO_RUN) --split test
	$(BIN)/vaelab plot $(DEMO_RUN)
	@echo "pictures of what the VAE learned are in $(DEMO_RUN)/; all of it in one page (open it in a browser):"
	$(BIN)/vaelab report $(DEMO_RUN)

test: venv
	$(BIN)/python -m pytest -q

# ruff (lint and format) and mypy over the whole tree; CI runs it before the tests
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python benchmarks/bench_train.py

# The README's reproduction table, generated from the records in reproductions/ (never typed).
reproductions-table: venv
	$(BIN)/python -c "from vaelab.reproduce.table import update_readme; update_readme('README.md', 'reproductions')"

clean:
	rm -rf $(VENV) runs .pytest_cache
