"""Grading at scale: a killed run resumes, a second run grades only what changed, Dask workers can die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import distributed
import pytest

import hostile
from conftest import ROOT
from harness import load_mutants, submission, write

pytestmark = pytest.mark.slow

NAME = hostile.NAME


def _class(folder):
    """Three learners of one notebook and the scores they earned."""
    mutant = load_mutants(NAME)[0]
    write(submission(NAME), folder / "ada" / f"{NAME}.ipynb")
    write(submission(NAME, solved=False), folder / "una" / f"{NAME}.ipynb")
    write(submission(NAME, mutant=mutant), folder / "mut" / f"{NAME}.ipynb")
    return {"ada": hostile.full(), "una": 0.0, "mut": hostile.full() - hostile.points(mutant["test"])}


def _grade(subs, out, *extra, wait=True):
    command = [sys.executable, "-m", "cvcourse.cli", "grade", str(subs), "--out", str(out), *extra]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _scores(out):
    book = json.loads((out / "gradebook.json").read_text())
    return {learner: notebooks[NAME]["score"] for learner, notebooks in book.items()}


def _graded_lines(stdout):
    return [line for line in stdout.splitlines() if NAME in line]


def _wait_for_results(out, count, process=None, limit=600):
    started = time.monotonic()
    while len(list((out / "work").glob("*/*/result.json"))) < count:
        assert time.monotonic() - started < limit, "no result appeared"
        assert process is None or process.poll() is None, "the grader ended before it could be killed"
        time.sleep(0.2)


def test_killed_run_resumes_and_later_runs_grade_only_what_changed(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    expected = _class(subs)
    grader = _grade(subs, out, "--jobs", "1", wait=False)
    _wait_for_results(out, 1, grader)
    grader.send_signal(signal.SIGKILL)  # mid-batch: one result written, one task running
    grader.wait()

    resumed = _grade(subs, out, "--jobs", "2")
    assert "kept 1 results" in resumed and len(_graded_lines(resumed)) == 2
    assert _scores(out) == expected
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 1 + len(expected)  # no lost, doubled or half-written rows

    again = _grade(subs, out, "--jobs", "2")
    assert "kept 3 results" in again and not _graded_lines(again)
    assert _scores(out) == expected

    write(submission(NAME), subs / "una" / f"{NAME}.ipynb")  # una hands in a finished notebook
    changed = _grade(subs, out, "--jobs", "2")
    assert "kept 2 results" in changed and [line.split()[0] for line in _graded_lines(changed)] == ["una"]
    assert _scores(out) == {**expected, "una": hostile.full()}

    forced = _grade(subs, out, "--jobs", "2", "--force")
    assert "kept" not in forced and len(_graded_lines(forced)) == 3


def test_dask_cluster_gives_the_same_gradebook_when_a_worker_dies(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    expected = _class(subs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        workers = client.run(os.getpid)
        grader = _grade(subs, out, "--scheduler", cluster.scheduler_address, wait=False)
        _wait_for_results(out, 1, grader)
        os.kill(next(iter(workers.values())), signal.SIGKILL)  # its running task is redone elsewhere
        assert grader.wait(timeout=900) == 0
    assert _scores(out) == expected
