"""The ``cvcourse`` command: release, grade, report, book, doctor.

User mistakes (a wrong name, a missing folder) end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path

from cvcourse.errors import CvcourseError

VERSIONED = ("torch", "torchvision", "numpy", "nbgrader", "jupyterlab", "captum", "torchmetrics",
             "scikit-learn", "scikit-image", "matplotlib", "ipywidgets")


def _release(args) -> None:
    from cvcourse import grading

    root = grading.project_root()
    for path in grading.release(root, args.notebooks):
        print(f"released {path.relative_to(root) if path.is_relative_to(root) else path}")


def _grade(args) -> None:
    from cvcourse import grading

    if args.jobs < 1 or args.memory <= 0 or args.timeout <= 0 or args.cell_timeout <= 0:
        raise CvcourseError("--jobs, --memory, --timeout and --cell-timeout must be positive")
    options = grading.GradeOptions(cell_timeout=args.cell_timeout, notebook_timeout=args.timeout,
                                   memory_gb=args.memory, jobs=args.jobs, force=args.force, scheduler=args.scheduler,
                                   warm_kernels=not args.cold_kernels)
    rows = grading.grade(Path(args.submissions), Path(args.out), options)
    learners = len({r["learner"] for r in rows})
    problems = sum(1 for r in rows if r["reason"])
    print(f"graded {len(rows)} files from {learners} learners into {args.out}/ (grades.csv, scores.csv, "
          f"lms.csv, gradebook.json, feedback/); {problems} with a reason noted")


def _report(args) -> None:
    from cvcourse import grading, report

    root = grading.project_root()
    out = Path(args.out) if args.out else root / "book" / "reports"
    result, ran, json_path, md_path = report.run(root, args.profile, args.notebooks, out,
                                                 cell_timeout=args.cell_timeout, fresh=args.fresh,
                                                 book_cache=not args.no_book_cache)
    print(report.markdown(result))
    print(f"\n{report.summary(result)}; wrote {json_path} and {md_path}")
    failed = [e for e in ran if e["status"] != "ok"]
    if failed:
        print(f"cvcourse report: {len(failed)} notebook(s) failed: "
              + "; ".join(f"{e['notebook']} ({e['error']})" for e in failed), file=sys.stderr)
        raise SystemExit(1)


def _book(args) -> None:
    from cvcourse import book, grading

    root = grading.project_root()
    if args.stage_only:
        print(book.stage(root, args.edition, args.profile or "cpu"))
    else:
        book.build(root, args.edition, args.profile, quiet=args.quiet)


def _doctor(args) -> None:
    import torch

    from cvcourse import data, pretrained, runtime

    def line(name: str, value: str) -> None:
        print(f"{name:<22} {value}")

    cuda = torch.cuda.is_available()
    line("device", f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu (no CUDA device)")
    try:
        chosen = runtime.profile()
        line("profile", f"{chosen.name}  (CVCOURSE_PROFILE to change: ci, cpu, gpu, auto)")
    except CvcourseError as error:
        line("profile", f"problem: {error}")
    line("python", sys.version.split()[0])
    for package in VERSIONED:
        try:
            line(package, importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            line(package, "MISSING")
    checks = {
        "data: digits": lambda: f"{len(data.digits('train')) + len(data.digits('test'))} images",
        "data: mnist5k": lambda: f"{len(data.mnist5k('train')) + len(data.mnist5k('test'))} images",
        "data: photos": lambda: f"{sum(1 for name in data.PHOTOS if data.photo(name) is not None)} of {len(data.PHOTOS)}",
        "data: shapes": lambda: f"generated, {tuple(data.ShapeScenes(1)[0][0].shape)} per image",
        "weights: mobilenet_v2": lambda: f"ok, {len(pretrained.imagenet_classes())} classes, "
                                         f"{pretrained.mobilenet_v2_weights_path().name} (SHA-256 checked)"
                                         if pretrained.mobilenet_v2() is not None else "",
    }
    for name, check in checks.items():
        try:
            line(name, check())
        except Exception as error:  # doctor reports every problem and goes on
            line(name, f"PROBLEM: {str(error).splitlines()[0] if str(error) else type(error).__name__}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvcourse", description="Run, release and grade the cvcourse notebooks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser("release", help="regenerate course/ from solutions/ with nbgrader")
    release.add_argument("notebooks", nargs="*", metavar="NN", help="notebook numbers or NN-slug names (default: all)")
    release.set_defaults(run=_release)

    grade = commands.add_parser("grade", help="autograde a folder of submissions (one folder or zip per learner)")
    grade.add_argument("submissions", help="folder with one sub-folder or zip file per learner")
    grade.add_argument("--out", default="grades", help="where grades.csv, gradebook.json and feedback/ go")
    grade.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                       help="submissions graded at once on this machine (default: one per core)")
    grade.add_argument("--cell-timeout", type=float, default=180.0, help="seconds a cell may run")
    grade.add_argument("--timeout", type=float, default=600.0, help="seconds a whole notebook may take")
    grade.add_argument("--memory", type=float, default=8.0, help="GB of memory per kernel process")
    grade.add_argument("--force", action="store_true", help="regrade submissions graded before")
    grade.add_argument("--scheduler", metavar="ADDRESS",
                       help="a Dask scheduler (tcp://host:8786): grade on its workers (they share this file system)")
    grade.add_argument("--cold-kernels", action="store_true",
                       help="start every kernel from scratch instead of forking it from one that imported torch")
    grade.set_defaults(run=_grade)

    report = commands.add_parser("report", help="run solutions notebooks under a profile: time, memory, headlines")
    report.add_argument("--profile", required=True, help="ci, cpu or gpu")
    report.add_argument("notebooks", nargs="*", metavar="NN", help="notebook numbers or NN-slug names (default: all)")
    report.add_argument("--out", help="folder for report-<profile>.json and .md (default: book/reports)")
    report.add_argument("--cell-timeout", type=float, default=3600.0, help="seconds a cell may run")
    report.add_argument("--fresh", action="store_true", help="drop entries of notebooks not run this time")
    report.add_argument("--no-book-cache", action="store_true",
                        help="do not store the executed notebooks for `make book-instructor`")
    report.set_defaults(run=_report)

    site = commands.add_parser("book", help="build the course website (learner or instructor edition)")
    site.add_argument("--edition", choices=("learner", "instructor"), default="learner",
                      help="learner (from course/) or instructor (from solutions/, executed)")
    site.add_argument("--profile", choices=("ci", "cpu", "gpu"), default=None,
                      help="profile the instructor edition runs in (default: cpu)")
    site.add_argument("--stage-only", action="store_true", help="write the staged pages, do not build")
    site.add_argument("--quiet", action="store_true")
    site.set_defaults(run=_book)

    doctor = commands.add_parser("doctor", help="show device, profile, versions, offline data and weights")
    doctor.set_defaults(run=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CvcourseError as error:
        print(f"cvcourse {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
