"""Shared fixtures: the course root and the list of solution notebooks.

The environment (ci profile, cache, threads) and the notebook timings live in the plugin
``notebook_timing``, which pyproject.toml loads for every test, notebooks in solutions/ included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def solution_notebooks() -> list[Path]:
    return sorted(ROOT.glob("solutions/[0-9][0-9]-*/[0-9][0-9]-*.ipynb"))
