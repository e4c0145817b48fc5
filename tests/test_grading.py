"""Grading round trips through `cvcourse grade`: full marks, zero, partial credit, broken files, no leaks."""

from __future__ import annotations

import csv
import html
import json
import re
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, solution_notebooks
from cvcourse import grading, notebooks
from harness import load_mutants, secret_lines, submission, write

pytestmark = pytest.mark.slow

ALL = [p.stem for p in solution_notebooks()]
FIRST = ALL[0]  # the notebook graded with a mistake, zipped and broken: one is enough to prove the pipeline


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One class, graded once: the rows of grades.csv, gradebook.json, and the output folder."""
    subs = tmp_path_factory.mktemp("submissions")
    for name in ALL:  # every notebook answered as its solutions do
        write(submission(name), subs / "ada" / f"{name}.ipynb")
    mutant = load_mutants(FIRST)[0]
    write(submission(FIRST, mutant=mutant), subs / "mut" / f"{FIRST}.ipynb")
    for name in ALL:  # an untouched copy of every learner notebook
        write(submission(name, solved=False), subs / "una" / f"{name}.ipynb")
    broken = subs / "bro"
    broken.mkdir()
    (broken / f"{FIRST}.ipynb").write_text('{"cells": [')
    (broken / "notes.txt").write_text("my answers are in my head")
    (broken / "empty.ipynb").write_text("")
    (broken / "image.ipynb").write_bytes(bytes(range(256)))
    write(notebooks.notebook([notebooks.code("print('my own work')")]), broken / "my-own-work.ipynb")
    with zipfile.ZipFile(subs / "zoe.zip", "w") as archive:  # a zipped learner folder, untouched
        archive.write(ROOT / "course" / FIRST / f"{FIRST}.ipynb", f"zoe/{FIRST}.ipynb")
    (subs / "stray.ipynb").write_text("{}")
    out = tmp_path_factory.mktemp("grades")
    result = subprocess.run([sys.executable, "-m", "cvcourse.cli", "grade", str(subs), "--out", str(out), "--jobs", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    with (out / "grades.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {"rows": rows, "book": json.loads((out / "gradebook.json").read_text()), "out": out, "mutant": mutant,
            "stdout": result.stdout}


def row(graded, learner, notebook):
    matches = [r for r in graded["rows"] if r["learner"] == learner and r["notebook"] == notebook]
    assert len(matches) == 1, f"expected one row for {learner}/{notebook}, got {matches}"
    return matches[0]


def max_points(name):
    return sum(grading.graded_cells(notebooks.read(ROOT / "solutions" / name / f"{name}.ipynb")).values())


@pytest.mark.parametrize("name", ALL)
def test_solved_notebook_gets_full_marks_in_the_sandbox(graded, name):
    # Full marks with no reason: the sandbox and the integrity guard leave an honest notebook alone.
    r = row(graded, "ada", name)
    assert float(r["score"]) == float(r["max_score"]) == max_points(name) > 0 and not r["reason"], r
    cells = graded["book"]["ada"][name]["cells"]
    assert set(cells) == set(grading.graded_cells(notebooks.read(ROOT / "solutions" / name / f"{name}.ipynb")))


@pytest.mark.parametrize("name", ALL)
def test_untouched_notebook_scores_zero_on_every_graded_cell(graded, name):
    r = row(graded, "una", name)
    assert float(r["score"]) == 0 and float(r["max_score"]) == max_points(name) and not r["reason"]
    cells = graded["book"]["una"][name]["cells"]
    expected = grading.graded_cells(notebooks.read(ROOT / "solutions" / name / f"{name}.ipynb"))
    assert set(cells) == set(expected) and all(score == 0 for score in cells.values())


def test_a_mistake_loses_the_points_of_its_test_cell_only(graded):
    cells = graded["book"]["mut"][FIRST]["cells"]
    mutant_test = graded["mutant"]["test"]
    assert cells[mutant_test] == 0
    full = grading.graded_cells(notebooks.read(ROOT / "solutions" / FIRST / f"{FIRST}.ipynb"))
    assert any(cells[g] == full[g] for g in full if g != mutant_test)


def test_zipped_submission_is_graded(graded):
    assert float(row(graded, "zoe", FIRST)["score"]) == 0 and not row(graded, "zoe", FIRST)["reason"]


@pytest.mark.parametrize(("learner", "notebook", "reason"), [
    ("bro", FIRST, f"{FIRST}.ipynb: not valid JSON (Expecting value at line 1, column 12)"),
    ("bro", "notes.txt", "notes.txt: not a notebook (.txt file)"),
    ("bro", "empty.ipynb", "empty.ipynb: empty file"),
    ("bro", "image.ipynb", "image.ipynb: not a notebook: the file is binary, not JSON text"),
    ("bro", "my-own-work.ipynb", "my-own-work.ipynb: belongs to no known notebook of this course"),
    ("stray", "stray.ipynb", "stray.ipynb: not in a learner folder or zip: cannot tell whose it is"),
])
def test_broken_submissions_get_a_one_line_reason(graded, learner, notebook, reason):
    r = row(graded, learner, notebook)
    assert r["reason"] == reason and float(r["score"]) == 0


def test_every_reason_is_one_line_and_the_batch_reports_progress(graded):
    assert all("\n" not in r["reason"] for r in graded["rows"])
    # one line per graded file as it finishes: learner, notebook, score/max, seconds
    assert re.search(rf"^\s*ada\s+{FIRST}\s+[\d.]+/[\d.]+\s+\([\d.]+ s\)$", graded["stdout"], flags=re.M)


def test_feedback_never_shows_hidden_tests(graded):
    pages = sorted((graded["out"] / "feedback").rglob("*.html"))
    assert {p.parent.name for p in pages} >= {"ada", "mut", "una", "zoe"}
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        leaked = [line for line in secret_lines(page.stem) if line in text]
        assert not leaked, f"{page.name} of {page.parent.name} shows hidden test lines: {leaked[:3]}"
    mutant_page = (graded["out"] / "feedback" / "mut" / f"{FIRST}.html").read_text()
    assert "hidden tests run here; they are not shown" in html.unescape(mutant_page)
