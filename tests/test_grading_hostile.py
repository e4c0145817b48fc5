"""A batch of hostile and broken submissions beside honest ones: each gets what it earned, the batch ends."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest

import hostile
from conftest import ROOT
from cvcourse import sandbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    subs, out = tmp_path_factory.mktemp("hostile-submissions"), tmp_path_factory.mktemp("hostile-grades")
    items = hostile.fixtures(out, subs)
    hostile.write_all(items, subs)
    result = subprocess.run(
        [sys.executable, "-m", "cvcourse.cli", "grade", str(subs), "--out", str(out), "--jobs", "2",
         "--cell-timeout", str(hostile.CELL_TIMEOUT), "--timeout", str(hostile.NOTEBOOK_TIMEOUT),
         "--memory", str(hostile.MEMORY_GB)],
        cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    with (out / "grades.csv").open() as handle:
        rows = {r["learner"]: r for r in csv.DictReader(handle)}
    return {"items": {i.learner: i for i in items}, "rows": rows, "out": out, "subs": subs,
            "book": json.loads((out / "gradebook.json").read_text()), "stdout": result.stdout}


@pytest.mark.parametrize("learner", [f.learner for f in hostile.fixtures(ROOT, ROOT)])
def test_each_submission_gets_what_it_earned_with_a_one_line_reason(batch, learner):
    item, row = batch["items"][learner], batch["rows"][learner]
    assert float(row["score"]) == item.expected, f"{learner}: {row}"
    if item.reason is None:
        assert not row["reason"], f"{learner}: unexpected reason {row['reason']!r}"
    else:
        assert re.search(item.reason, row["reason"]), f"{learner}: reason {row['reason']!r}"
    assert "\n" not in row["reason"]


def test_honest_learner_keeps_every_point_beside_hostile_ones(batch):
    cells = batch["book"]["honest"][hostile.NAME]["cells"]
    assert cells and all(score == hostile.points(cell) for cell, score in cells.items())


def test_a_submission_cannot_write_outside_its_own_folder(batch):
    if not sandbox.isolated():  # no Landlock on this kernel: the grader must say that writes are not confined
        assert "writes are not confined" in batch["stdout"]
        return
    pwned = [p for p in (*batch["out"].rglob("*"), *batch["subs"].rglob("*")) if p.is_file()
             and (p.name == "pwned.txt" or p.read_bytes()[:5] == b"pwned")]
    assert not pwned, f"a submission wrote {pwned[:3]}"


def test_a_huge_output_is_cut_in_feedback(batch):
    page = batch["out"] / "feedback" / "huge-output" / f"{hostile.NAME}.html"
    assert page.exists() and page.stat().st_size < 5_000_000
    assert "more characters not kept" in page.read_text()


def test_no_kernel_outlives_the_batch(batch):
    assert sandbox.orphans() == []
