"""Shared fixtures: the course root, the ci profile for everything, and notebook timings for nbval runs."""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_SECONDS_LIMIT = 60.0

# Everything the suite runs (in-process code, nbval kernels, grading workers) uses the tiny profile and
# writes its cache outside the repository.
os.environ["CVCOURSE_PROFILE"] = "ci"
os.environ.setdefault("CVCOURSE_CACHE", tempfile.mkdtemp(prefix="cvcourse-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
# Two notebooks run side by side on two cores: one intra-op thread each avoids oversubscription.
os.environ["OMP_NUM_THREADS"] = "1"

_notebook_seconds: dict[str, float] = collections.defaultdict(float)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def solution_notebooks() -> list[Path]:
    return sorted(ROOT.glob("solutions/[0-9][0-9]-*/[0-9][0-9]-*.ipynb"))


def pytest_runtest_logreport(report):
    """Add up nbval's per-cell times into per-notebook wall times."""
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
    if any(seconds > NOTEBOOK_SECONDS_LIMIT for seconds in _notebook_seconds.values()) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
