# The two set-up commands: `make devnet` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install devnet test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch comes from constraints.txt (the CPU wheel); GPU users install their CUDA build first.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Trains 4 windows of the small model over loopback (about 6 minutes on 2 CPU cores), then stops.
devnet: $(STAMP)
	$(BIN)/tessera devnet --stages 3 --validators 1 --windows 4 --model small \
		--summary devnet.summary.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
