"""Helpers the tests share: mutants, and learner submissions made from the course notebooks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

from conftest import ROOT
from cvcourse import notebooks


def load_mutants(name: str) -> list[dict]:
    """The MUTANTS list of tests/mutants/NN-slug.py (empty if there is no file)."""
    path = ROOT / "tests" / "mutants" / f"{name}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"mutants_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MUTANTS


def mutate(source: str, mutant: dict) -> str:
    """Apply a mutant's text replacements; fail loudly if the solution no longer has the text."""
    for old, new in mutant["replace"]:
        assert old in source, f"mutant {mutant['why']!r}: {old!r} is not in cell {mutant['cell']} any more"
        source = source.replace(old, new)
    return source


def submission(name: str, mutant: dict | None = None, solved: bool = True) -> nbformat.NotebookNode:
    """The learner notebook of ``name`` as a learner would hand it in: untouched, or with every solution
    cell filled in from the instructor's notebook (one of them mutated if asked)."""
    learner = notebooks.read(ROOT / "course" / name / f"{name}.ipynb")
    if not solved:
        return learner
    answers = {notebooks.grade_id(c): c.source for c in notebooks.solution_cells(notebooks.read(
        ROOT / "solutions" / name / f"{name}.ipynb"))}
    for cell in notebooks.solution_cells(learner):
        source = answers[notebooks.grade_id(cell)]
        if mutant is not None and mutant["cell"] == notebooks.grade_id(cell):
            source = mutate(source, mutant)
        # A learner's answer carries no solution markers.
        cell.source = "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                                 and "### END SOLUTION" not in line)
    return learner


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def secret_lines(name: str) -> set[str]:
    """Lines of the hidden tests of ``name`` that a learner never sees: hidden-region lines (longer than
    12 characters) that appear nowhere in the released learner notebook nor in the answers (a learner's
    feedback shows their own code, which may share a line with a hidden test)."""
    source = notebooks.read(ROOT / "solutions" / name / f"{name}.ipynb")
    seen = [*notebooks.read(ROOT / "course" / name / f"{name}.ipynb").cells, *notebooks.solution_cells(source)]
    released = {line.strip() for c in seen for line in c.source.splitlines()}
    secret = set()
    for cell in notebooks.test_cells(source):
        region = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
        secret |= {line.strip() for line in region.splitlines() if len(line.strip()) > 12}
    # A hidden line that a shown line contains (the same call with a comment after it) is not a secret.
    return {line for line in secret if not any(line in shown for shown in released)}
