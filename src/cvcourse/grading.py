"""The nbgrader pipeline: release learner notebooks, and grade a class of submissions.

Release regenerates ``course/`` from ``solutions/`` with nbgrader's ``generate_assignment``.

Grading works in tasks, one per (learner, notebook). Each task runs in its own process and its own
nbgrader course folder under ``OUT/work/NN-slug/learner/``, with a copy of a template gradebook that
already holds every assignment, so tasks share no state and can run side by side. A task writes its
``result.json`` last and atomically; the batch then gathers the results into ``grades.csv``,
``gradebook.json`` and per-learner feedback pages that show neither hidden tests nor their tracebacks.
"""

from __future__ import annotations

import concurrent.futures
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
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor

from cvcourse.errors import CvcourseError
from cvcourse.notebooks import grade_id, test_cells

CONFIG_FILE = "nbgrader_config.py"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
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
    text = (result.get("error") or result.get("log") or "unknown error").strip().splitlines()
    return text[-1] if text else "unknown error"


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


# ---------------------------------------------------------------- one grading task (own process)


def _grading_config(task_dir: Path, root: Path, timeout: float):
    config = course_config(root)
    config.CourseDirectory.root = str(task_dir)
    config.CourseDirectory.source_directory = str(root / "solutions")
    config.CourseDirectory.release_directory = str(task_dir / "release")
    config.CourseDirectory.submitted_directory = "submitted"
    config.CourseDirectory.autograded_directory = "autograded"
    config.CourseDirectory.feedback_directory = "feedback"
    config.CourseDirectory.db_url = f"sqlite:///{task_dir / 'gradebook.db'}"
    config.Exchange.root = str(task_dir / "exchange")
    config.Execute.timeout = int(timeout)
    config.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTests]
    return config


def _hidden_free(source: str) -> str:
    """Source with every hidden-test region replaced by one comment."""
    out, hidden = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            hidden = True
            out.append(line[: line.index(HIDDEN_BEGIN)] + "# (hidden tests run here; they are not shown)")
        elif HIDDEN_END in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback preprocessor: drop hidden-test source, and reduce graded cells' errors to one line.

    A traceback would quote the failing line of a hidden test, so a graded cell's error keeps only its
    type and message (hidden tests assert with short labels, never with values).
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.source = _hidden_free(cell.source)
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "error":
                        output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


def _atomic_write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def run_task(task_dir: Path) -> dict:
    """Autograde the one submission prepared in ``task_dir`` and write its feedback and ``result.json``."""
    from nbgrader.api import Gradebook

    task = json.loads((task_dir / "task.json").read_text())
    learner, assignment = task["learner"], task["assignment"]
    config = _grading_config(task_dir, Path(task["root"]), task["cell_timeout"])
    api = _api(config)
    result = {**task, "score": 0.0, "cells": {}, "reason": None}
    graded = api.autograde(assignment, learner, force=True, create=True)
    if not graded["success"]:
        result["reason"] = f"could not be graded: {_first_error_line(graded)}"
    else:
        with Gradebook(config.CourseDirectory.db_url) as gradebook:
            notebook = gradebook.find_submission_notebook(assignment, assignment, learner)
            result["cells"] = {g.name: float(g.score) for g in notebook.grades if g.max_score}
        result["score"] = sum(result["cells"].values())
        feedback = api.generate_feedback(assignment, learner, force=True)
        if not feedback["success"]:
            result["reason"] = f"graded, but feedback failed: {_first_error_line(feedback)}"
    _atomic_write_json(task_dir / "result.json", result)
    return result


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
    shutil.move(scratch / "gradebook.db", template)
    shutil.rmtree(scratch)
    return template


@dataclasses.dataclass
class GradeOptions:
    """Limits for one grading run."""

    cell_timeout: float = 180.0   # seconds per cell, as nbgrader's Execute.timeout
    notebook_timeout: float = 600.0  # seconds for a whole task, kernel start to feedback
    jobs: int = 1


def _prepare_task(root: Path, out: Path, submission: Submission, template: Path, options: GradeOptions) -> Path:
    task_dir = out / "work" / submission.assignment / submission.learner
    if task_dir.exists():
        shutil.rmtree(task_dir)
    target = task_dir / "submitted" / submission.learner / submission.assignment
    target.mkdir(parents=True)
    shutil.copy(submission.path, target / f"{submission.assignment}.ipynb")
    shutil.copy(template, task_dir / "gradebook.db")
    _atomic_write_json(task_dir / "task.json", {
        "learner": submission.learner, "assignment": submission.assignment, "root": str(root),
        "file": str(submission.path), "cell_timeout": options.cell_timeout,
    })
    return task_dir


def _run_in_subprocess(task_dir: Path, options: GradeOptions) -> dict:
    task = json.loads((task_dir / "task.json").read_text())
    threads = max(1, (os.cpu_count() or 1) // max(1, options.jobs))  # no oversubscription across jobs
    env = {**os.environ, "CVCOURSE_PROFILE": GRADING_PROFILE, "CVCOURSE_CACHE": str(task_dir / "cache"),
           "OMP_NUM_THREADS": str(threads),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        process = subprocess.run(
            [sys.executable, "-m", "cvcourse.grading", str(task_dir)], cwd=task_dir, env=env,
            capture_output=True, text=True, timeout=options.notebook_timeout,
        )
    except subprocess.TimeoutExpired:
        return {**task, "score": 0.0, "cells": {}, "reason": f"ran past the {options.notebook_timeout:.0f} s limit"}
    result_file = task_dir / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    last = (process.stderr.strip().splitlines() or ["no output"])[-1]
    return {**task, "score": 0.0, "cells": {}, "reason": f"the grader stopped: {last}"}


def grade(submissions: Path, out: Path, options: GradeOptions | None = None, progress=print) -> list[dict]:
    """Grade every submission under ``submissions`` into ``out``; return one row per file.

    Writes ``out/grades.csv`` (learner, notebook, score, max_score, reason), ``out/gradebook.json``
    (scores per graded cell) and ``out/feedback/<learner>/<NN-slug>.html``.
    """
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
    tasks = [_prepare_task(root, out, s, template, options) for s in gradable]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {pool.submit(_run_in_subprocess, t, options): (t, time.perf_counter()) for t in tasks}
        for future in concurrent.futures.as_completed(futures):
            task_dir, started = futures[future]
            result = future.result()
            row = {"learner": result["learner"], "notebook": result["assignment"], "score": result["score"],
                   "max_score": max_points[result["assignment"]], "reason": result["reason"],
                   "cells": result["cells"]}
            rows.append(row)
            _collect_feedback(task_dir, out, row)
            progress(f"{row['learner']:>16}  {row['notebook']:<32} {row['score']:g}/{row['max_score']:g}"
                     f"  ({time.perf_counter() - started:.1f} s){'  ' + row['reason'] if row['reason'] else ''}")
    rows.sort(key=lambda r: (r["learner"], r["notebook"]))
    _write_outputs(out, rows)
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


def _write_outputs(out: Path, rows: list[dict]) -> None:
    tmp = out / "grades.csv.tmp"
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["learner", "notebook", "score", "max_score", "reason"])
        for row in rows:
            writer.writerow([row["learner"], row["notebook"], f"{row['score']:g}", f"{row['max_score']:g}",
                             row["reason"] or ""])
    os.replace(tmp, out / "grades.csv")
    book: dict[str, dict] = {}
    for row in rows:
        book.setdefault(row["learner"], {})[row["notebook"]] = {
            k: row[k] for k in ("score", "max_score", "cells", "reason")
        }
    _atomic_write_json(out / "gradebook.json", book)


if __name__ == "__main__":  # one grading task, started by _run_in_subprocess
    run_task(Path(sys.argv[1]))
