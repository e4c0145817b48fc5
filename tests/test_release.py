"""course/ is exactly what `cvcourse release` makes from solutions/, and every notebook keeps the contract."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from conftest import ROOT, solution_notebooks
from cvcourse import grading, notebooks
from harness import secret_lines

SOLUTIONS = solution_notebooks()
IDS = [p.stem for p in SOLUTIONS]
CHECK_HELPERS = re.compile(r"\b(check_close|check_shape|check_type|passed|print)\s*\(")


def hidden_regions(source: str) -> list[str]:
    return re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", source, flags=re.S)


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    grading.release(ROOT, release_dir=out)
    return out


def test_there_are_notebooks():
    assert len(SOLUTIONS) >= 3


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_course_notebook_is_up_to_date(path, fresh_release):
    released = fresh_release / path.parent.name / path.name
    committed = ROOT / "course" / path.parent.name / path.name
    assert committed.exists(), f"course/{path.parent.name} is missing: run `make release`"
    assert json.loads(committed.read_text()) == json.loads(released.read_text()), (
        f"course/{path.parent.name} is stale: run `make release` and commit course/"
    )


def test_course_has_no_notebook_without_a_source():
    course = {p.stem for p in ROOT.glob("course/[0-9][0-9]-*/[0-9][0-9]-*.ipynb")}
    assert course == set(IDS)


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_solution_notebook_keeps_the_contract(path):
    nb = notebooks.read(path)
    assert path.stem == path.parent.name
    assert nb.metadata["kernelspec"]["name"] == "python3"
    title = nb.cells[0]
    number = int(path.stem[:2])
    assert title.cell_type == "markdown" and title.source.startswith(f"# Q{number}. "), "title: # QN. <question>"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "store solutions without outputs"
    assert "%" not in notebooks.setup_cell(nb).source.split("\n", 1)[0], "no magics in the setup cell"
    text = "\n".join(c.source for c in nb.cells)
    assert "headline(" in text, "the notebook states its headline with cvcourse.results.headline"
    assert re.search(r"^#+ .*(Further reading|References)", text, flags=re.M | re.I), "end with further reading"
    ids = [notebooks.grade_id(c) for c in nb.cells if notebooks.role(c) != "plain"]
    assert len(ids) == len(set(ids)), "grade ids are unique"
    tests = notebooks.test_cells(nb)
    assert len(tests) >= 3, "at least three graded parts"
    previous_roles = [notebooks.role(c) for c in nb.cells if c.cell_type == "code"]
    assert previous_roles.index("solution") < previous_roles.index("tests"), "a solution cell comes first"
    for cell in notebooks.solution_cells(nb):
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
    for cell in tests:
        gid = notebooks.grade_id(cell)
        assert cell.metadata["nbgrader"]["points"] > 0 and cell.metadata["nbgrader"]["locked"], gid
        regions = hidden_regions(cell.source)
        assert len(regions) == 1 and "assert " in regions[0], f"{gid}: one hidden region with assertions"
        assert not CHECK_HELPERS.search(regions[0]), f"{gid}: hidden tests use plain asserts with short labels"
        visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
        assert visible.strip(), f"{gid}: visible tests come before the hidden ones"


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_learner_notebook_has_no_solutions_and_no_hidden_tests(path):
    nb = nbformat.read(str(ROOT / "course" / path.parent.name / path.name), as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert secret_lines(path.stem), "the hidden tests hold lines of their own, not only copies of visible ones"
    learner_tests = {notebooks.grade_id(c): c.source for c in notebooks.test_cells(nb)}
    for cell in notebooks.test_cells(notebooks.read(path)):
        before, rest = cell.source.split("### BEGIN HIDDEN TESTS")
        after = rest.split("### END HIDDEN TESTS", 1)[1]
        visible = (before.rstrip() + "\n" + after.lstrip("\n")).strip()
        assert learner_tests[notebooks.grade_id(cell)].strip() == visible, f"{notebooks.grade_id(cell)} differs"
    stubs = notebooks.solution_cells(nb)
    assert stubs and all("raise NotImplementedError()" in c.source for c in stubs)
