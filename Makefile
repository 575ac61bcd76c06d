# Route Counter: every developer and CI goes through these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv template lint test unit bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is rebuilt whenever requirements.txt changes.
$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)  ## create .venv from requirements.txt (pinned)

template: $(STAMP)  ## write template.json
	$(BIN)/python generate.py > template.json

lint: template  ## ruff and cfn-lint (informational checks included)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.json --include-checks I

unit: $(STAMP)  ## pytest only
	$(BIN)/python -m pytest -q

test: lint unit  ## everything CI runs: lint, cfn-lint, tests

BENCH_ARGS ?=
bench: $(STAMP)  ## benchmarks: print the table, write bench/results.json (BENCH_ARGS=--quick)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:  ## remove generated files and the venv
	rm -rf $(VENV) template.json .pytest_cache .ruff_cache
