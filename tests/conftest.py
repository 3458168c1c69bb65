"""Fixtures shared by the test modules."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

import isv_sandbox
import tap_common

# The suite tests the product as users install it: the taps must come from the wheel
# installed into the venv (scripts/bootstrap builds it), never from the source tree.
if "site-packages" not in Path(tap_common.__file__).resolve().parts and not os.environ.get("TAPS_FROM_SOURCE"):
    raise pytest.UsageError(
        f"tap_common was imported from the source tree ({tap_common.__file__}), not the installed "
        "wheel: run the suite with scripts/test (set TAPS_FROM_SOURCE=1 to allow it on purpose)")
from helpers import FAST_SANDBOX


@pytest.fixture
def sandboxes():
    """``start(vendor, **settings)``: a sandbox for this test, stopped at its end.

    Each vendor's ``FAST_SANDBOX`` settings apply unless the test overrides them.
    """
    started = []

    def start(vendor: str, **settings):
        server = isv_sandbox.start(vendor, **{**FAST_SANDBOX.get(vendor, {}), **settings})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def heroku(sandboxes):
    return functools.partial(sandboxes, "heroku")


@pytest.fixture
def isvapp(sandboxes):
    return functools.partial(sandboxes, "isvapp")


@pytest.fixture
def marketplace(sandboxes):
    return functools.partial(sandboxes, "marketplace")


# -- the fault matrix: its size in the header, its run time in the summary -----------------


def pytest_report_header(config):
    import fault_matrix

    return fault_matrix.summary()


def pytest_terminal_summary(terminalreporter):
    reports = [report for outcome in terminalreporter.stats.values() for report in outcome
               if hasattr(report, "when") and hasattr(report, "duration")
               and report.nodeid.startswith("tests/test_fault_matrix.py::test_fault_matrix[")]
    if not reports:
        return
    seconds = sum(report.duration for report in reports)
    outcomes = {}
    for report in reports:
        if report.when == "call" or report.outcome != "passed":
            outcomes[report.nodeid] = getattr(report, "wasxfail", None) and "xfailed" or report.outcome
    counts = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    terminalreporter.write_line(
        f"fault matrix: {len(outcomes)} pairs in {seconds:.1f} s ("
        + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) + ")")
