"""Each graded test cell passes the instructor's solution and rejects plausible wrong implementations.

``tests/mutants/NN-slug.py`` lists the mistakes learners really make. Each mutant edits one solution
cell (``replace``: pairs of exact text and its wrong version) and names the test cell that must fail.
A test cell may use only the notebook's setup cell and its solution cells, so each check runs those
cells in a fresh namespace instead of running the whole notebook.
"""

from __future__ import annotations

import contextlib
import io

import matplotlib
import pytest

from conftest import solution_notebooks
from harness import load_mutants, mutate
from cvcourse import notebooks

matplotlib.use("Agg")


def run_test_cell(nb, test_id: str, mutant: dict | None = None) -> BaseException | None:
    """Run setup + solution cells (one mutated) in a fresh namespace, then the test cell; return its error."""
    namespace: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(notebooks.setup_cell(nb).source, "setup", "exec"), namespace)
        for cell in notebooks.solution_cells(nb):
            source = cell.source
            if mutant is not None and notebooks.grade_id(cell) == mutant["cell"]:
                source = mutate(source, mutant)
            exec(compile(source, notebooks.grade_id(cell), "exec"), namespace)
        test = next(c for c in notebooks.test_cells(nb) if notebooks.grade_id(c) == test_id)
        try:
            exec(compile(test.source, test_id, "exec"), namespace)
        except Exception as error:  # noqa: BLE001 (any failure of the test cell rejects the mutant)
            return error
    return None


NOTEBOOKS = {path.stem: notebooks.read(path) for path in solution_notebooks()}
TEST_CELLS = [(name, notebooks.grade_id(c)) for name, nb in NOTEBOOKS.items() for c in notebooks.test_cells(nb)]
MUTANTS = [(name, m) for name in NOTEBOOKS for m in load_mutants(name)]


@pytest.mark.parametrize(("name", "test_id"), TEST_CELLS, ids=[f"{n}:{t}" for n, t in TEST_CELLS])
def test_solution_passes_in_isolation(name, test_id):
    """The instructor's solution passes each test cell using only the setup and solution cells."""
    error = run_test_cell(NOTEBOOKS[name], test_id)
    assert error is None, f"{name} {test_id} fails on the solution: {type(error).__name__}: {error}"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # wrong answers may divide by zero; that is the point
@pytest.mark.parametrize(("name", "mutant"), MUTANTS, ids=[f"{n}:{m['test']}:{m['why']}" for n, m in MUTANTS])
def test_mutant_is_rejected(name, mutant):
    error = run_test_cell(NOTEBOOKS[name], mutant["test"], mutant)
    assert error is not None, f"{name}: test cell {mutant['test']} accepts the mutant: {mutant['why']}"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_every_test_cell_rejects_a_mutant(name):
    covered = {m["test"] for m in load_mutants(name)}
    cells = {notebooks.grade_id(c) for c in notebooks.test_cells(NOTEBOOKS[name])}
    assert cells - covered == set(), f"{name}: no mutant in tests/mutants/ for {sorted(cells - covered)}"
