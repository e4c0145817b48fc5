"""Hostile and broken submissions for the grading tests, each with the score it must get.

Every fixture starts from a real learner notebook (``NAME``), answered or not, and adds one thing a
careless or dishonest learner does. ``expected`` is the score it has earned (what the same answers
would get without the hostile part); ``reason`` is a regular expression its CSV reason must match
(None: no reason).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nbformat

from cvcourse import notebooks
from harness import load_mutants, mutate, submission

NAME = "16-spatial-pooling"
CELL_TIMEOUT = 20      # seconds; every cell of NAME takes well under this in the ci profile
NOTEBOOK_TIMEOUT = 180  # seconds for a whole task: the slow fixture sleeps 16 s in each of its 19 code cells
MEMORY_GB = 3


def points(grade_id: str) -> float:
    cells = notebooks.test_cells(notebooks.read(Path(__file__).parents[1] / "solutions" / NAME / f"{NAME}.ipynb"))
    return next(float(c.metadata["nbgrader"]["points"]) for c in cells if notebooks.grade_id(c) == grade_id)


def full() -> float:
    cells = notebooks.test_cells(notebooks.read(Path(__file__).parents[1] / "solutions" / NAME / f"{NAME}.ipynb"))
    return sum(float(c.metadata["nbgrader"]["points"]) for c in cells)


@dataclasses.dataclass
class Fixture:
    learner: str
    build: object            # () -> notebook, or bytes/str for a raw file
    expected: float
    reason: str | None = None
    file_name: str = f"{NAME}.ipynb"


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if notebooks.grade_id(c) == grade_id)


def _prepend(grade_id: str, code: str, solved: bool = True):
    def build():
        nb = submission(NAME, solved=solved)
        cell = _cell(nb, grade_id)
        cell.source = code + "\n" + cell.source
        return nb
    return build


def _append(grade_id: str, code: str):
    def build():
        nb = submission(NAME)
        cell = _cell(nb, grade_id)
        cell.source = cell.source + "\n" + code
        return nb
    return build


def _edit_tests():
    nb = submission(NAME, solved=False)
    for cell in notebooks.test_cells(nb):
        cell.source = "pass  # all tests pass now"
    return nb


def _delete(grade_id: str):
    def build():
        nb = submission(NAME)
        nb.cells = [c for c in nb.cells if notebooks.grade_id(c) != grade_id]
        return nb
    return build


def _tampered():
    """One plausible mistake in every answer, and every check the tests could call replaced."""
    nb = submission(NAME)
    mutants = {}
    for mutant in load_mutants(NAME):
        mutants.setdefault(mutant["cell"], mutant)
    for cell in notebooks.solution_cells(nb):
        if notebooks.grade_id(cell) in mutants:
            cell.source = mutate(cell.source, mutants[notebooks.grade_id(cell)])
    first = notebooks.solution_cells(nb)[0]
    first.source = """import builtins, numpy, numpy.testing, torch, torch.nn.functional
import cvcourse.checks
always = lambda *args, **kwargs: True
torch.allclose = torch.equal = numpy.allclose = always
torch.Tensor.allclose = torch.Tensor.equal = always
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *args, **kwargs: None
torch.testing.assert_close = lambda *args, **kwargs: None
for name in dir(cvcourse.checks):
    if name.startswith("check"):
        setattr(cvcourse.checks, name, lambda *args, **kwargs: None)
builtins.all = builtins.any = always
builtins.abs = lambda x: 0
torch.nn.functional.max_pool2d = lambda *args, **kwargs: max_pool2d(*args, **kwargs)
""" + first.source
    return nb


def _vandal(out: Path, submissions: Path):
    """Tries to write into the grader's output, every gradebook, and the submissions; then answers honestly."""
    code = f"""import pathlib
_hits = []
for _target in [pathlib.Path({str(out)!r}) / "pwned.txt", pathlib.Path({str(submissions)!r}) / "pwned.txt",
                *pathlib.Path({str(out)!r}).rglob("*.db"), *pathlib.Path({str(out)!r}).rglob("*.json"),
                *pathlib.Path({str(out)!r}).rglob("*.csv")]:
    try:
        _target.write_text("pwned")
        _hits.append(str(_target))
    except OSError:
        pass
print("wrote", len(_hits), "files outside")
"""
    return _prepend("max_pool2d", code)


def fixtures(out: Path, submissions: Path) -> list[Fixture]:
    blur = points("test_blur_pool2d")
    return [
        Fixture("honest", lambda: submission(NAME), full()),
        Fixture("untouched", lambda: submission(NAME, solved=False), 0),
        Fixture("loop-in-cell", _prepend("blur_pool2d", "while True:\n    pass"), full() - blur),
        # Each of the three cells that call it is interrupted at the cell limit; only its test cell is graded.
        Fixture("loop-in-function", _append("global_pool2d", "def global_pool2d(x, mode='avg'):\n    while True:\n"
                                                               "        pass"), full() - points("test_global_pool2d")),
        # A 40 GB tensor (a size typed wrong) fails at once under the memory limit instead of swapping the
        # machine. A bomb that keeps what it grabbed in a global is not here: the kernel then starves in
        # whichever later cell allocates, so where it dies is a matter of chance.
        Fixture("memory-bomb", _prepend("blur_pool2d", "_huge = torch.randn(100_000, 100_000)"), full() - blur),
        Fixture("slow-notebook", _slow(), 0, reason=r"ran past the \d+ s limit"),
        Fixture("sys-exit", _prepend("blur_pool2d", "import sys\nsys.exit()"), full() - blur),
        Fixture("os-exit", _prepend("blur_pool2d", "import os\nos._exit(0)"), 0, reason=r"the kernel died"),
        Fixture("self-kill", _prepend("blur_pool2d", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"), 0,
                reason=r"the kernel died"),
        Fixture("edited-tests", _edit_tests, 0),
        Fixture("deleted-test", _delete("test_avg_pool2d"), full() - points("test_avg_pool2d")),
        Fixture("missing-answer", _delete("avg_pool2d"), full() - points("test_avg_pool2d")),
        Fixture("invalid-json", '{"cells": [', 0, reason=r"not valid JSON"),
        Fixture("empty-file", "", 0, reason=r"empty file"),
        Fixture("other-name", lambda: submission(NAME), full(), file_name="02-backprop-by-hand.ipynb"),
        Fixture("huge-output", _append("blur_pool2d", "print('x' * 100_000_000)"), full()),
        Fixture("tampering", _tampered, 0, reason=r"replaced builtins\.abs, .* and \d+ more; put back before the tests ran"),
        Fixture("vandal", _vandal(out, submissions), full()),
    ]


def _slow():
    """Every code cell sleeps just under the cell limit: each cell is fine, the notebook is not."""
    def build():
        nb = submission(NAME)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.source = f"import time\ntime.sleep({CELL_TIMEOUT - 4})\n" + cell.source
        return nb
    return build


def write_all(items: list[Fixture], submissions: Path) -> None:
    for item in items:
        path = submissions / item.learner / item.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        built = item.build() if callable(item.build) else item.build
        if isinstance(built, str):
            path.write_text(built)
        else:
            nbformat.write(built, str(path))
