"""The nbgrader pipeline: release learner notebooks, and grade a class of submissions.

Release regenerates ``course/`` from ``solutions/`` with nbgrader's ``generate_assignment``.

Grading works in tasks, one per (learner, notebook). Each task runs in its own process
(:mod:`cvcourse.autograde`) and its own nbgrader course folder under ``OUT/work/NN-slug/learner/``, with a
copy of a template gradebook that already holds every assignment, so tasks share no state and can run
side by side, on this machine or on a Dask cluster. A task writes its ``result.json`` last and
atomically, keyed by what it depends on, so a second run grades only what is new or changed and a
killed run resumes. The batch then gathers the results into ``grades.csv``, ``scores.csv``, ``lms.csv``,
``gradebook.json`` and per-learner feedback pages that show neither hidden tests nor their tracebacks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat

from cvcourse.errors import CvcourseError
from cvcourse.notebooks import grade_id, test_cells

CONFIG_FILE = "nbgrader_config.py"
ASSIGNMENT_ID = re.compile(r"^\d\d-[a-z0-9-]+$")
GRADING_PROFILE = "ci"


# ---------------------------------------------------------------- the course and its notebooks


def project_root(start: Path | None = None) -> Path:
    """The course folder: ``CVCOURSE_ROOT``, else the nearest folder above ``start`` (default: the
    working directory) holding ``nbgrader_config.py`` and ``solutions/``."""
    if os.environ.get("CVCOURSE_ROOT"):
        return Path(os.environ["CVCOURSE_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file() and (folder / "solutions").is_dir():
            return folder
    raise CvcourseError(f"no course folder (with {CONFIG_FILE} and solutions/) at or above {here}")


def course_config(root: Path):
    """The traitlets ``Config`` of the course's ``nbgrader_config.py``."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()


def assignment_ids(root: Path) -> list[str]:
    """Every ``NN-slug`` folder in ``solutions/`` that holds its ``NN-slug.ipynb``, sorted."""
    return sorted(
        p.name for p in (root / "solutions").iterdir()
        if ASSIGNMENT_ID.match(p.name) and (p / f"{p.name}.ipynb").is_file()
    )


def select_assignments(root: Path, wanted: list[str] | None) -> list[str]:
    """Resolve ``NN`` or ``NN-slug`` names to assignment ids; a one-line error for an unknown one."""
    available = assignment_ids(root)
    if not wanted:
        return available
    chosen = []
    for name in wanted:
        matches = [a for a in available if a == name or a.split("-", 1)[0] == name.zfill(2)]
        if not matches:
            raise CvcourseError(f"unknown notebook {name!r}; choose from: {' '.join(available)}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def graded_cells(notebook) -> dict[str, float]:
    """grade_id -> points of every autograded test cell of an nbgrader notebook."""
    return {grade_id(c): float(c.metadata["nbgrader"].get("points", 0)) for c in test_cells(notebook)}


def read_notebook(path: Path):
    """Read an nbformat-4 notebook, or raise ``CvcourseError`` with a one-line reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CvcourseError("not a notebook: the file is binary, not JSON text") from None
    if not text.strip():
        raise CvcourseError("empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CvcourseError(f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    if not isinstance(data, dict) or "cells" not in data:
        raise CvcourseError("not a Jupyter notebook: valid JSON but no 'cells'")
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as error:  # nbformat raises several unrelated types for malformed notebooks
        raise CvcourseError(f"not a valid Jupyter notebook ({str(error).splitlines()[0]})") from None


# ---------------------------------------------------------------- release


def _api(config):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _first_error_line(result: dict) -> str:
    """The line of an nbgrader log that says what went wrong (nbgrader's own summary says 'see above')."""
    text = f"{result.get('error') or ''}\n{result.get('log') or ''}"
    if "DeadKernelError" in text or "Kernel died" in text:
        return "the kernel died (the notebook exited or killed its own process)"
    errors = [line.strip() for line in text.splitlines()
              if re.match(r"^\s*[\w.]*(Error|Exception|Timeout)\w*\b", line) and "NbGraderException" not in line]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (errors or lines or ["unknown error"])[-1]


def release(root: Path, wanted: list[str] | None = None, release_dir: Path | None = None) -> list[Path]:
    """Generate learner notebooks (no outputs, solutions or hidden tests) from ``solutions/``.

    Writes ``course/NN-slug/`` (or ``release_dir``) for each chosen assignment; returns the notebooks.
    """
    config = course_config(root)
    if release_dir is not None:  # a release elsewhere (e.g. to compare with course/) keeps its own gradebook
        config.CourseDirectory.release_directory = str(Path(release_dir).resolve())
        config.CourseDirectory.db_url = f"sqlite:///{Path(release_dir).resolve() / 'gradebook.db'}"
    (root / ".nbgrader").mkdir(exist_ok=True)
    api = _api(config)
    written = []
    for assignment in select_assignments(root, wanted):
        result = api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise CvcourseError(f"could not release {assignment}: {_first_error_line(result)}")
        written.append(Path(api.coursedir.format_path(api.coursedir.release_directory, ".", assignment))
                       / f"{assignment}.ipynb")
    return written


# ---------------------------------------------------------------- finding submissions


@dataclasses.dataclass
class Submission:
    """One file a learner handed in: which notebook it is, or why it cannot be graded."""

    learner: str
    path: Path
    assignment: str | None = None
    reason: str | None = None


def _learner_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "learner"


def _identify(notebook, stem: str, known: dict[str, set[str]]) -> str | None:
    """The assignment a notebook belongs to: by its graded cell ids, else by its file name."""
    ids = {grade_id(c) for c in notebook.cells} - {None}
    overlap = {a: len(ids & cells) for a, cells in known.items()}
    best = max(overlap, key=overlap.get, default=None)
    if best is not None and overlap[best] > 0:
        return best
    return _named_assignment(stem, known)


def _named_assignment(stem: str, assignments) -> str | None:
    """The assignment a file name starts with (``01-feature-extraction (1)`` -> ``01-feature-extraction``)."""
    return next((a for a in assignments if stem.startswith(a)), None)


def _unzip(archive: Path, into: Path) -> Path:
    """Extract a zip safely (no absolute paths, no '..') into a fresh folder and return it."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as handle:
            for member in handle.infolist():
                target = (into / member.filename).resolve()
                if not target.is_relative_to(into.resolve()):
                    continue
                handle.extract(member, into)
    except zipfile.BadZipFile:
        raise CvcourseError("not a valid zip file") from None
    return into


def _files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(folder).parts)
    )


def discover(submissions: Path, known: dict[str, set[str]], scratch: Path) -> list[Submission]:
    """Every file of every learner (a folder, or a zip of one) classified as gradable or not."""
    if not submissions.is_dir():
        raise CvcourseError(f"{submissions} is not a folder of submissions (one folder or zip per learner)")
    found: list[Submission] = []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith("."):
            continue
        learner = _learner_id(entry.stem if entry.is_file() else entry.name)
        if entry.is_file() and entry.suffix.lower() != ".zip":
            found.append(Submission(learner, entry, reason="not in a learner folder or zip: cannot tell whose it is"))
            continue
        try:
            folder = _unzip(entry, scratch / "unzipped" / learner) if entry.is_file() else entry
        except CvcourseError as error:
            found.append(Submission(learner, entry, reason=str(error)))
            continue
        seen: dict[str, Submission] = {}
        for path in _files(folder):
            submission = Submission(learner, path)
            found.append(submission)
            if path.suffix.lower() != ".ipynb":
                submission.reason = f"not a notebook ({path.suffix or 'no extension'} file)"
                continue
            try:
                submission.assignment = _identify(read_notebook(path), path.stem, known)
            except CvcourseError as error:
                submission.reason = str(error)
                continue
            if submission.assignment is None:
                submission.reason = "belongs to no known notebook of this course"
            elif submission.assignment in seen:
                submission.reason = f"a second file for {submission.assignment}; graded {seen[submission.assignment].path.name}"
                submission.assignment = None
            else:
                seen[submission.assignment] = submission
    return found


def atomic_write_json(path: Path, data) -> None:
    """Write ``data`` as JSON so that a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# ---------------------------------------------------------------- a whole class


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _template_gradebook(root: Path, out: Path, assignments: list[str]) -> Path:
    """A gradebook holding every assignment's cells, rebuilt only when ``solutions/`` changes."""
    sources = [root / "solutions" / a / f"{a}.ipynb" for a in assignments]
    template = out / "template" / f"{_digest(sources + [root / CONFIG_FILE])}.db"
    if template.exists():
        return template
    config = course_config(root)
    scratch = Path(tempfile.mkdtemp(dir=out))
    config.CourseDirectory.release_directory = str(scratch / "release")
    config.CourseDirectory.db_url = f"sqlite:///{scratch / 'gradebook.db'}"
    config.Exchange.root = str(scratch / "exchange")
    api = _api(config)
    for assignment in assignments:
        result = api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise CvcourseError(f"could not prepare {assignment} for grading: {_first_error_line(result)}")
    template.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch / "gradebook.db", template)
    shutil.rmtree(scratch)
    return template


STDERR_FILE = "stderr.txt"  # a task's own error output, in its folder


@dataclasses.dataclass
class GradeOptions:
    """Limits and dispatch for one grading run."""

    cell_timeout: float = 180.0      # seconds per cell, as nbgrader's Execute.timeout
    notebook_timeout: float = 600.0  # seconds for a whole task, kernel start to feedback
    memory_gb: float = 8.0           # data memory per kernel process
    jobs: int = 1                    # tasks at once on this machine
    force: bool = False              # regrade submissions graded before with the same inputs
    scheduler: str | None = None     # a Dask scheduler address: run the tasks on its workers
    warm_kernels: bool = True        # fork local kernels from a zygote that imported torch once


def _task_key(root: Path, submission: Submission, options: GradeOptions) -> str:
    """What a result depends on: the submission, its notebook's source, the config, and the limits."""
    source = root / "solutions" / submission.assignment / f"{submission.assignment}.ipynb"
    limits = f"{options.cell_timeout}/{options.memory_gb}".encode()
    return _digest([submission.path, source, root / CONFIG_FILE]) + hashlib.sha256(limits).hexdigest()[:8]


def _finished(task_dir: Path, key: str) -> dict | None:
    """The result of an earlier run of this very task, if there is one."""
    try:
        result = json.loads((task_dir / "result.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("key") == key else None


def _prepare_task(root: Path, out: Path, submission: Submission, template: Path, options: GradeOptions,
                  key: str) -> Path:
    task_dir = out / "work" / submission.assignment / submission.learner
    if task_dir.exists():
        shutil.rmtree(task_dir)
    target = task_dir / "submitted" / submission.learner / submission.assignment
    target.mkdir(parents=True)
    shutil.copy(submission.path, target / f"{submission.assignment}.ipynb")
    shutil.copy(template, task_dir / "gradebook.db")
    atomic_write_json(task_dir / "task.json", {
        "learner": submission.learner, "assignment": submission.assignment, "root": str(root),
        "file": str(submission.path), "cell_timeout": options.cell_timeout, "key": key,
        "memory": int(options.memory_gb * 2**30),
    })
    return task_dir


def _task_env(task_dir: Path | None, options: GradeOptions) -> dict[str, str]:
    """The environment of a grading task and of its kernel."""
    threads = max(1, (os.cpu_count() or 1) // max(1, options.jobs))  # no oversubscription across jobs
    env = {**os.environ, "CVCOURSE_PROFILE": GRADING_PROFILE, "OMP_NUM_THREADS": str(threads),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if task_dir is not None:
        env.update({"CVCOURSE_CACHE": str(task_dir / "cache"), "JUPYTER_RUNTIME_DIR": str(task_dir / "runtime")})
    return env


def _task_main(task_dir: str, env: dict[str, str]) -> None:
    """A task forked by the task server: its own session, environment and folder, then the grading."""
    from cvcourse import sandbox
    from cvcourse.autograde import run_task

    os.setsid()
    sandbox.die_with_parent()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(task_dir)
    with open(os.devnull, "wb") as devnull, open(Path(task_dir) / STDERR_FILE, "wb") as stderr:
        os.dup2(devnull.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
    run_task(Path(task_dir))


def _task_server():
    """The process that forks warm tasks: it imported nbgrader and cvcourse's autograder once."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["cvcourse.autograde"])
    return context


def _start_task(task_dir: Path, env: dict[str, str], warm: bool):
    """Start one task: forked from the task server when ``warm``, else as ``python -m cvcourse.autograde``."""
    from cvcourse import sandbox

    if warm:
        process = _task_server().Process(target=_task_main, args=(str(task_dir), env))
        process.start()
        return process
    with open(task_dir / STDERR_FILE, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "cvcourse.autograde", str(task_dir)], cwd=task_dir, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                preexec_fn=sandbox.die_with_parent)


def _wait(process, timeout: float | None) -> bool:
    """Whether the task ended within ``timeout`` seconds."""
    if isinstance(process, subprocess.Popen):
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    process.join(timeout)
    return not process.is_alive()


def run_in_subprocess(task_dir: Path, options: GradeOptions, zygote: Path | None = None) -> dict:
    """Run one task in its own process with a wall-time limit; always return a result.

    ``zygote``: the socket of this run's warm kernel factory (:mod:`cvcourse.zygote`); with it the task
    process is forked warm too. Without it (a Dask worker) the task and its kernel start from scratch.
    """
    from cvcourse import sandbox, zygote as warm

    task = json.loads((task_dir / "task.json").read_text())
    env = _task_env(task_dir, options)
    if zygote is not None:
        env[warm.SOCKET_ENV] = str(zygote)
    started = time.perf_counter()
    process = _start_task(task_dir, env, warm=zygote is not None)
    if not _wait(process, options.notebook_timeout):
        os.killpg(process.pid, 9)  # the task; its kernel dies with it (sandbox: parent-death signal)
        _wait(process, None)
        sandbox.remove_home((task_dir / "home").resolve())  # and whatever the kernel started
        result = {**task, "score": 0.0, "cells": {}, "reason": f"ran past the {options.notebook_timeout:g} s limit"}
        atomic_write_json(task_dir / "result.json", result)
    else:
        result_file = task_dir / "result.json"
        if result_file.exists():
            result = json.loads(result_file.read_text())
        else:
            stderr = (task_dir / STDERR_FILE).read_text(errors="replace")
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            result = {**task, "score": 0.0, "cells": {}, "reason": f"the grader stopped: {last}"}
    return {**result, "seconds": time.perf_counter() - started}


def connect(scheduler: str):
    """A Dask client for ``scheduler``, or a one-line error."""
    try:
        from distributed import Client
    except ImportError:
        raise CvcourseError("--scheduler needs Dask: pip install distributed") from None
    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CvcourseError(f"no Dask scheduler at {scheduler} ({reason})") from None


def _dispatch(tasks: list[Path], options: GradeOptions, client=None):
    """Yield each task's result as it finishes: on local worker threads, or on a Dask cluster."""
    if client is not None:
        from distributed import as_completed

        futures = [client.submit(run_in_subprocess, t, options, pure=False, key=f"grade-{t.parent.name}-{t.name}")
                   for t in tasks]
        for future in as_completed(futures):
            yield future.result()
        return
    with _warm_kernels(options) as zygote, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = [pool.submit(run_in_subprocess, t, options, zygote) for t in tasks]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()


@contextlib.contextmanager
def _warm_kernels(options: GradeOptions):
    """The socket of a zygote for this run's kernels, or None (each kernel then starts cold)."""
    from cvcourse import zygote

    if not options.warm_kernels:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="cvcourse-zygote-"))  # short: a socket path has 107 bytes at most
    process = zygote.start(folder / "socket", _task_env(None, options))
    try:
        yield folder / "socket" if process is not None else None
    finally:
        zygote.stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def grade(submissions: Path, out: Path, options: GradeOptions | None = None, progress=None) -> list[dict]:
    """Grade every submission under ``submissions`` into ``out``; return one row per file.

    Writes ``out/grades.csv`` (one row per learner and notebook, with a one-line reason where there is
    one), ``out/scores.csv`` (one row per learner, a column per notebook and the total), ``out/lms.csv``
    (learner, total, max), ``out/gradebook.json`` (scores per graded cell) and
    ``out/feedback/<learner>/<NN-slug>.html``. Submissions graded before with the same inputs keep
    their result unless ``options.force``; a run that was killed picks up where it stopped.
    """
    from tqdm.auto import tqdm

    from cvcourse import sandbox

    options = options or GradeOptions()
    root = project_root()
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    assignments = assignment_ids(root)
    sources = {a: read_notebook(root / "solutions" / a / f"{a}.ipynb") for a in assignments}
    max_points = {a: sum(graded_cells(nb).values()) for a, nb in sources.items()}
    known = {a: set(graded_cells(nb)) for a, nb in sources.items()}
    found = discover(submissions, known, out)
    gradable = [s for s in found if s.reason is None]
    template = _template_gradebook(root, out, sorted({s.assignment for s in gradable})) if gradable else None
    rows = [_rejected_row(s, assignments, max_points) for s in found if s.reason is not None]
    results, tasks = [], []
    for submission in gradable:
        key = _task_key(root, submission, options)
        task_dir = out / "work" / submission.assignment / submission.learner
        earlier = None if options.force else _finished(task_dir, key)
        if earlier is not None:
            results.append(earlier)
        else:
            tasks.append(_prepare_task(root, out, submission, template, options, key))
    client = connect(options.scheduler) if options.scheduler and tasks else None
    say = progress or tqdm.write
    with tqdm(total=len(tasks), desc="grading", unit="notebook", disable=progress is not None or not tasks) as bar:
        if tasks and not sandbox.isolated():
            say("warning: this system has no Landlock (Linux 5.13+), so submissions' writes are not confined "
                "to their own folder")
        if results:
            say(f"kept {len(results)} results graded before with the same inputs (--force regrades them)")
        for result in _dispatch(tasks, options, client):
            results.append(result)
            bar.update()
            say(f"{result['learner']:>16}  {result['assignment']:<32} {result['score']:g}/"
                f"{max_points[result['assignment']]:g}  ({result['seconds']:.1f} s)"
                f"{'  ' + result['reason'] if result['reason'] else ''}")
    if client is not None:
        client.close()
    for result in results:
        row = {"learner": result["learner"], "notebook": result["assignment"], "score": result["score"],
               "max_score": max_points[result["assignment"]], "reason": result["reason"], "cells": result["cells"]}
        rows.append(row)
        _collect_feedback(out / "work" / row["notebook"] / row["learner"], out, row)
    rows.sort(key=lambda r: (r["learner"], r["notebook"]))
    _write_outputs(out, rows, assignments, max_points)
    return rows


def _rejected_row(submission: Submission, assignments: list[str], max_points: dict[str, float]) -> dict:
    """A zero row for a file that could not be graded, under the notebook its name suggests if any."""
    stem = submission.path.stem
    named = submission.assignment or _named_assignment(stem, assignments)
    return {"learner": submission.learner, "notebook": named or submission.path.name, "score": 0.0,
            "max_score": max_points.get(named, 0.0), "reason": f"{submission.path.name}: {submission.reason}",
            "cells": {}}


def _collect_feedback(task_dir: Path, out: Path, row: dict) -> None:
    page = task_dir / "feedback" / row["learner"] / row["notebook"] / f"{row['notebook']}.html"
    if page.exists():
        target = out / "feedback" / row["learner"] / f"{row['notebook']}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, target)


def _write_csv(path: Path, header: list[str], lines: list[list]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(lines)
    os.replace(tmp, path)


def _write_outputs(out: Path, rows: list[dict], assignments: list[str], max_points: dict[str, float]) -> None:
    _write_csv(out / "grades.csv", ["learner", "notebook", "score", "max_score", "reason"],
               [[r["learner"], r["notebook"], f"{r['score']:g}", f"{r['max_score']:g}", r["reason"] or ""]
                for r in rows])
    # Per learner: the best graded file for each notebook (a rejected second file does not hide the first).
    table: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["notebook"] in max_points:
            best = table.setdefault(r["learner"], {})
            best[r["notebook"]] = max(best.get(r["notebook"], 0.0), r["score"])
    graded = [a for a in assignments if any(a in scores for scores in table.values())]
    total_max = sum(max_points[a] for a in graded)
    _write_csv(out / "scores.csv", ["learner", *graded, "total", "max"],
               [[learner, *(f"{scores.get(a, 0.0):g}" for a in graded), f"{sum(scores.values()):g}", f"{total_max:g}"]
                for learner, scores in sorted(table.items())])
    _write_csv(out / "lms.csv", ["learner_id", "total", "max"],
               [[learner, f"{sum(scores.values()):g}", f"{total_max:g}"] for learner, scores in sorted(table.items())])
    book: dict[str, dict] = {}
    for row in rows:
        book.setdefault(row["learner"], {})[row["notebook"]] = {
            k: row[k] for k in ("score", "max_score", "cells", "reason")
        }
    atomic_write_json(out / "gradebook.json", book)
