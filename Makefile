# Route Counter: every developer and CI goes through these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: help venv bundle template lint scan test unit integration pytest bench docs screenshots lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is made anew whenever requirements.txt changes, or when an earlier build was
# interrupted: bootstrap.py (uv, else pip) writes the stamp last, so a half-built venv has none.
$(STAMP): requirements.txt
	@$(PYTHON) bootstrap.py $(VENV) requirements.txt

venv: $(STAMP)  ## create .venv from requirements.txt (pinned)

# handler/stats.py is generated from handler/src/stats/ (docs/development.md: the stats source).
bundle: $(STAMP)  ## rewrite handler/stats.py from its modules in handler/src/stats/
	$(BIN)/python -m tools.bundle

template: $(STAMP)  ## write template.json
	$(BIN)/python generate.py > template.json

lint: template  ## ruff and cfn-lint (informational checks included)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.json --include-checks I

# checkov has many pins of its own: it lives in its own venv, rebuilt when they change.
$(CHECKOV_STAMP): requirements-checkov.txt
	@$(PYTHON) bootstrap.py $(CHECKOV_VENV) requirements-checkov.txt

scan: template $(CHECKOV_STAMP)  ## checkov security scan of template.json (no failed check)
	$(CHECKOV_VENV)/bin/checkov -f template.json --framework cloudformation \
		--skip-download --compact --quiet

unit: $(STAMP)  ## the fast tier: tests/unit (in-process moto, no servers; about 3.5 min on 2 cores)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)  ## the slow tier: tests/integration (emulator, local stack, deploy.sh)
	$(BIN)/python -m pytest -q tests/integration

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint scan pytest  ## everything CI runs: lint, cfn-lint, checkov, both test tiers

BENCH_ARGS ?=
bench: $(STAMP)  ## benchmarks: print the table, write bench/results.json (BENCH_ARGS=--quick: a smoke run, to bench/results-quick.json)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The committed bench/results.json is the source of docs/performance.md's table.
docs: $(STAMP)  ## rewrite docs/performance.md's table from bench/results.json
	$(BIN)/python bench/report.py

# Headless Chromium (Debian's `chromium` package) on a sample dashboard served on 127.0.0.1.
screenshots: $(STAMP)  ## screenshots of the dashboard at 1280 and 375 px wide, in screenshots/
	$(BIN)/python -m tools.browser screenshots

# The locks must install on every Python the README promises: resolved for the lowest
# (3.11.0) across platforms, with markers where a package needs a newer Python.
LOCK_PYTHON := 3.11.0
LOCK_VENV   := .venv-lock
UV_VERSION  := $(shell sed -n 's/^UV_VERSION = "\([^"]*\)".*/\1/p' bootstrap.py)
UV_COMPILE  = $(LOCK_VENV)/bin/uv pip compile --quiet --universal \
	--python-version $(LOCK_PYTHON) --custom-compile-command "make lock"

lock:  ## re-resolve requirements.txt and requirements-checkov.txt from their .in files
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-checkov.in -o requirements-checkov.txt

clean:  ## remove generated files and the venvs
	rm -rf $(VENV) $(CHECKOV_VENV) $(LOCK_VENV) template.json .pytest_cache .ruff_cache
