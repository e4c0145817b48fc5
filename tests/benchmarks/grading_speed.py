"""Benchmark: `cvcourse grade` against plain sequential `nbgrader autograde` on one class.

    python tests/benchmarks/grading_speed.py [--learners 40] [--notebook 16-spatial-pooling] [--jobs N] [--also-cold]

Builds a class of synthetic submissions of one notebook (answered, answered with one plausible mistake,
untouched), grades it both ways in the ci profile, checks both give the same scores, and prints the
wall times and their ratio. Not a test: it takes minutes, and timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE.parent), str(ROOT / "src")]

from harness import load_mutants, submission, write  # noqa: E402


def build_class(folder: Path, name: str, learners: int) -> None:
    mutants = load_mutants(name)
    for i in range(learners):
        kind = i % 3
        nb = submission(name, mutant=mutants[i % len(mutants)] if kind == 1 and mutants else None, solved=kind != 2)
        write(nb, folder / f"learner{i:03d}" / f"{name}.ipynb")


def plain_nbgrader(folder: Path, name: str, scratch: Path) -> tuple[float, dict]:
    course = scratch / "nbgrader-course"
    course.mkdir()
    (course / "source").symlink_to(ROOT / "solutions", target_is_directory=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.Exchange.root = {str(course / 'exchange')!r}\n"
        "c.Execute.timeout = 180\n")
    for learner in sorted(folder.iterdir()):
        target = course / "submitted" / learner.name / name
        target.mkdir(parents=True)
        shutil.copy(learner / f"{name}.ipynb", target / f"{name}.ipynb")
    env = {**os.environ, "CVCOURSE_PROFILE": "ci", "CVCOURSE_CACHE": str(scratch / "cache")}
    subprocess.run(["nbgrader", "generate_assignment", name, "--force"], cwd=course, env=env, check=True,
                   capture_output=True)
    started = time.perf_counter()
    subprocess.run(["nbgrader", "autograde", name, "--force"], cwd=course, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s.id: gradebook.find_submission(name, s.id).score for s in gradebook.students}
    return seconds, scores


def cvcourse_grade(folder: Path, jobs: int, scratch: Path, *extra: str) -> tuple[float, dict]:
    out = scratch / f"cvcourse-grades{''.join(extra)}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvcourse.cli", "grade", str(folder), "--out", str(out), "--jobs", str(jobs),
                    *extra], cwd=ROOT, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    book = json.loads((out / "gradebook.json").read_text())
    return seconds, {learner: sum(entry["score"] for entry in notebooks.values()) for learner, notebooks in book.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=40)
    parser.add_argument("--notebook", default="16-spatial-pooling")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--also-cold", action="store_true", help="also time cvcourse grade --cold-kernels")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # nbgrader runs alembic
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        build_class(scratch / "class", args.notebook, args.learners)
        ours, our_scores = cvcourse_grade(scratch / "class", args.jobs, scratch)
        cold = cvcourse_grade(scratch / "class", args.jobs, scratch, "--cold-kernels")[0] if args.also_cold else None
        plain, plain_scores = plain_nbgrader(scratch / "class", args.notebook, scratch)
    same = our_scores == plain_scores
    print(f"{args.learners} submissions of {args.notebook} on {os.cpu_count()} cores")
    print(f"  nbgrader autograde (sequential): {plain:7.1f} s")
    print(f"  cvcourse grade --jobs {args.jobs}:        {ours:7.1f} s")
    if cold is not None:
        print(f"  ... with --cold-kernels:         {cold:7.1f} s")
    print(f"  speed-up: {plain / ours:.2f}x; same scores: {same}")
    if not same:
        print(f"  differences: { {k: (our_scores.get(k), plain_scores.get(k)) for k in plain_scores if our_scores.get(k) != plain_scores.get(k)} }")


if __name__ == "__main__":
    main()
