"""The system test's one expensive fixture: the scenario, run once for every check."""
from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ROOT
from tests.system.deployment import Deployment
from tests.system.hosts import Run
from tests.system.scenario import Outcome, counted_figures, run_scenario

FIGURES = pytest.StashKey[dict]()
LOGS = ROOT / "instance" / "system-test-logs"  # the last run's, kept for reading


@pytest.fixture(scope="module")
def outcome(request) -> Outcome:
    """Deploy the hosts, run the timeline, and remove every trace of the run, even on failure."""
    if os.geteuid() != 0:
        pytest.fail("the system test makes network namespaces: run it as root")
    run = Run()
    try:
        result = run_scenario(Deployment(run))
    finally:
        run.close(keep_logs_in=LOGS)
    request.config.stash[FIGURES] = {**result.figures, **counted_figures(result),
                                     "logs": str(LOGS.relative_to(ROOT))}
    return result


def pytest_terminal_summary(terminalreporter, config) -> None:
    if FIGURES in config.stash:
        terminalreporter.write_line("system test: " + json.dumps(config.stash[FIGURES]))
