# Heartbeat Monitor. `make run` serves on SQLite; `make test` runs the suite; `make system-test`
# runs the several-hosts test (as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: run test system-test soak bench bench-deps monitor browser-deps hosts-deps clean

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

# The system test (tests/system) runs apart: `make system-test`; CI runs both. Two pytest-xdist
# workers: many tests wait on servers and subprocesses, so two overlap well on two cores.
# `PYTEST_ARGS="-n 0"` runs them in one process.
PYTEST_ARGS ?= -n 2 --dist worksteal
test: $(VENV)/.requirements-dev browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS) --ignore=tests/system

# Several hosts in network namespaces on this machine (tests/system); needs root.
system-test: $(VENV)/.requirements-dev hosts-deps
	$(BIN)/python -m pytest tests/system

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
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

# Debian packages the system test's hosts run: iproute2 (network namespaces), a PostgreSQL
# server of their own and Redis; installed once.
hosts-deps:
	@command -v ip >/dev/null && command -v redis-server >/dev/null && \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update && apt-get install -y iproute2 postgresql redis-server)

clean:
	rm -rf $(VENV) .pytest_cache
