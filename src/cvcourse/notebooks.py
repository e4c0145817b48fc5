"""The nbgrader roles of notebook cells: build them when authoring, find them when testing and grading.

A course notebook has one *setup* cell (its first code cell: imports, profile, seed), *solution* cells
(``### BEGIN SOLUTION`` regions the learner fills in) and *test* cells (locked, graded, with a
``### BEGIN HIDDEN TESTS`` region). A test cell may use only the setup cell and solution cells, so it
can be checked without running the rest of the notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SCHEMA_VERSION = 3
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA_VERSION,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def markdown(text: str):
    """A narrative cell."""
    return new_markdown_cell(text.strip("\n"))


def code(source: str):
    """An ordinary code cell the learner may run and change."""
    return new_code_cell(source.strip("\n"))


def solution(grade_id: str, source: str):
    """A cell whose ``### BEGIN SOLUTION`` regions the learner writes."""
    return new_code_cell(source.strip("\n"), metadata=_nbgrader(grade_id, grade=False, solution=True, locked=False))


def tests(grade_id: str, points: float, source: str):
    """A locked, graded cell of visible tests, then a ``### BEGIN HIDDEN TESTS`` region."""
    return new_code_cell(source.strip("\n"),
                         metadata=_nbgrader(grade_id, grade=True, solution=False, locked=True, points=points))


def notebook(cells) -> nbformat.NotebookNode:
    """A notebook on the Python 3 kernel with the given cells."""
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python", "version": "3.11"}
    return nb


def role(cell) -> str:
    """``solution``, ``tests`` or ``plain`` for one cell."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if meta.get("solution"):
        return "solution"
    if meta.get("grade"):
        return "tests"
    return "plain"


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def setup_cell(nb) -> nbformat.NotebookNode:
    """The first code cell: imports, profile and seed."""
    return next(c for c in nb.cells if c.cell_type == "code")


def solution_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and role(c) == "solution"]


def test_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and role(c) == "tests"]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)
