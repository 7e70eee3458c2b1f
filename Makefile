# Heartbeat Monitor. `make run` serves on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: run test soak bench bench-deps monitor system-test-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.requirements: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.requirements-dev: requirements-dev.txt $(VENV)/.requirements
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.requirements
	LOG_FORMAT=$${LOG_FORMAT:-text} $(BIN)/flask db upgrade
	LOG_FORMAT=$${LOG_FORMAT:-text} $(BIN)/flask run --host 127.0.0.1 --port 5000

monitor: $(VENV)/.requirements
	$(BIN)/flask monitor

test: $(VENV)/.requirements-dev system-test-deps
	$(BIN)/python -m pytest

# The chaos soak, not part of `make test`: 5 minutes of load under injected faults, then an
# invariant check (README, "What happens when things fail"). Needs root for its spool disk.
# `make soak SOAK_ARGS="--minutes 10"`, `make soak SOAK_ARGS=--short` (a 1.5-minute smoke run).
soak: $(VENV)/.requirements-dev
	$(BIN)/python -m soak $(SOAK_ARGS)

bench: $(VENV)/.requirements-dev bench-deps
	$(BIN)/python bench/run_all.py

# The load generator of the ingest and memory benchmarks (Debian's wrk); installed once.
bench-deps:
	@command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)

# Debian packages the end-to-end tests drive (headless Chromium); installed once.
system-test-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

clean:
	rm -rf $(VENV) .pytest_cache
