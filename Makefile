# Sluiceway: the two commands a newcomer needs are `make demo` and `make test`.
# Every target installs what it needs first, so a fresh machine needs nothing by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install system-deps demo test unit lint docs bench stack-up stack-down stack-status clean

help:
	@echo "make demo   - install, start the local stack, seed a source, export one tenant, show rows"
	@echo "make test   - install, start the stack, run the whole test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make docs   - regenerate docs/configuration.md from the settings classes"
	@echo "make bench  - benchmarks (table + JSON in benchmarks/results/); the 1M-issue end-to-end one alone takes ~20 min, see docs/performance.md"
	@echo "make stack-up | stack-status | stack-down"

system-deps:
	@bash deploy/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(BIN)/sluiceway demo

test: install
	$(BIN)/python -m tests.run

unit: $(STAMP)
	$(BIN)/pytest -ra tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/sluiceway config docs --output docs/configuration.md

bench: install
	$(BIN)/python -m benchmarks

stack-up: install
	$(BIN)/sluiceway stack up

stack-status: $(STAMP)
	$(BIN)/sluiceway stack status

stack-down: $(STAMP)
	$(BIN)/sluiceway stack down

clean: stack-down
	rm -rf .sluiceway demo-lake
