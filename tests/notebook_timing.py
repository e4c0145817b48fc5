"""pytest plugin for the whole suite: the environment every test and notebook kernel runs in, and a
wall-time limit per notebook executed by nbval (each cell is one test item; their times add up)."""

from __future__ import annotations

import collections
import os
import tempfile

import pytest

NOTEBOOK_SECONDS_LIMIT = 60.0

# Set on import, before any kernel starts: kernels and grading workers inherit it.
os.environ["CVCOURSE_PROFILE"] = "ci"
os.environ.setdefault("CVCOURSE_CACHE", tempfile.mkdtemp(prefix="cvcourse-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
# Two notebooks run side by side on two cores: one intra-op thread each avoids oversubscription.
os.environ["OMP_NUM_THREADS"] = "1"

_notebook_seconds: dict[str, float] = collections.defaultdict(float)


def pytest_runtest_logreport(report):
    if ".ipynb::" in report.nodeid:
        _notebook_seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section(f"notebook times (limit {NOTEBOOK_SECONDS_LIMIT:.0f} s each)")
    for name, seconds in sorted(_notebook_seconds.items()):
        flag = "  OVER THE LIMIT" if seconds > NOTEBOOK_SECONDS_LIMIT else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}{flag}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """A notebook over the time limit fails the run even when every cell passed."""
    over = [name for name, seconds in _notebook_seconds.items() if seconds > NOTEBOOK_SECONDS_LIMIT]
    if over and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
