"""One grading task, in its own process: autograde one submission with nbgrader and write its result.

``python -m cvcourse.autograde TASKDIR`` is started by :func:`cvcourse.grading.grade` for each (learner,
notebook). The task folder holds the submission, a copy of the template gradebook and ``task.json``.
The kernel runs through :mod:`cvcourse.sandbox`; before the first cell the grader snapshots the trusted
libraries (:mod:`cvcourse.integrity`) and before every graded test cell it puts back whatever the
submission replaced. Outputs are capped, and feedback shows neither hidden tests nor their tracebacks.
The result is written last, atomically, by this process (the kernel cannot reach the task folder).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.util import run_sync
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, GetGrades, IgnorePattern,
                                    LimitOutput, NbGraderPreprocessor, SaveAutoGrades)
from traitlets import Unicode

from cvcourse import sandbox, zygote
from cvcourse.grading import _api, _first_error_line, atomic_write_json, course_config
from cvcourse.integrity import import_lines
from cvcourse.notebooks import setup_cell

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MAX_TEXT_CHARS = 20_000          # per stream output kept in the graded notebook and the feedback
MAX_RICH_BYTES = 2_000_000       # per rich output (an image, HTML)
MAX_KERNEL_OUTPUT = 5_000_000    # characters a kernel may print to stdout and to stderr in all
SANDBOX_ENV = "CVCOURSE_SANDBOX"


# ---------------------------------------------------------------- the kernel: sandboxed, guarded


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel through ``python -m cvcourse.sandbox`` with this task's limits and user."""

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        settings = json.loads(os.environ[SANDBOX_ENV])
        wrapper = [sys.executable, "-m", "cvcourse.sandbox", "--home", settings["home"]]
        if settings.get("memory"):
            wrapper += ["--memory", str(int(settings["memory"]))]
        if settings.get("zygote"):
            wrapper += ["--zygote", settings["zygote"]]
        return [*wrapper, "--", *command]


# Names a submission replaced, gathered by GuardedExecute for this task's result.
REPAIRED: set[str] = set()


class GuardedExecute(Execute):
    """nbgrader's Execute, plus the integrity guard: snapshot first, repair before each graded cell."""

    setup_imports = Unicode("", help="import lines of the instructor's setup cell").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)
        self._token = f"__cvcourse_guard_{secrets.token_hex(16)}__"  # a name no submission can know
        self._installed = False

    async def _run_hidden(self, source: str, cell_index: int) -> list:
        """Run ``source`` in the kernel without touching the notebook; return its outputs."""
        probe = nbformat.v4.new_code_cell(source)
        kept = self.nb.cells[cell_index]
        try:
            await super().async_execute_cell(probe, cell_index, store_history=False)
        finally:
            self.nb.cells[cell_index] = kept
        return probe.outputs

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type == "code" and cell.source.strip() and not self._installed:
            self._installed = True
            await self._run_hidden(
                "import builtins as _b, cvcourse.integrity as _i\n"
                f"_b.{self._token} = globals()[{self._token!r}] = _i.install({self.setup_imports!r}, globals(), "
                "('numpy.testing', 'torch.testing'))\n"
                f"_i.cap_streams({MAX_KERNEL_OUTPUT})\ndel _b, _i", cell_index)
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            outputs = await self._run_hidden(f"print('\\x00'.join({self._token}()))", cell_index)
            text = "".join(o.get("text", "") for o in outputs
                           if o.get("output_type") == "stream" and o.get("name") == "stdout")
            failed = any(o.get("output_type") == "error" for o in outputs)
            REPAIRED.update(name for name in text.strip().split("\x00") if name)
            if failed:  # the guard itself was broken: the tests cannot be trusted, so they do not run
                REPAIRED.add("the grader's integrity guard")
                cell.outputs = [nbformat.v4.new_output(
                    "error", ename="IntegrityError", evalue="the submission broke the grader's checks", traceback=[])]
                return cell
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    execute_cell = run_sync(async_execute_cell)  # nbclient binds the synchronous form to its own method


class CapOutputs(NbGraderPreprocessor):
    """Cut any output that would make the graded notebook or the feedback page huge."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and len(output.get("text", "")) > MAX_TEXT_CHARS:
                dropped = len(output.text) - MAX_TEXT_CHARS
                output.text = output.text[:MAX_TEXT_CHARS] + f"\n... {dropped} more characters not kept ...\n"
            data = output.get("data", {})
            if sum(len(str(v)) for v in data.values()) > MAX_RICH_BYTES:
                output["data"] = {"text/plain": "(an output too large to keep)"}
        return cell, resources


# ---------------------------------------------------------------- feedback without hidden tests


def hidden_free(source: str) -> str:
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
            cell.source = hidden_free(cell.source)
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "error":
                        output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


# ---------------------------------------------------------------- the task


def _config(task_dir: Path, task: dict):
    root = Path(task["root"])
    config = course_config(root)
    config.CourseDirectory.root = str(task_dir)
    config.CourseDirectory.source_directory = str(root / "solutions")
    config.CourseDirectory.release_directory = str(task_dir / "release")
    config.CourseDirectory.submitted_directory = "submitted"
    config.CourseDirectory.autograded_directory = "autograded"
    config.CourseDirectory.feedback_directory = "feedback"
    config.CourseDirectory.db_url = f"sqlite:///{task_dir / 'gradebook.db'}"
    config.Exchange.root = str(task_dir / "exchange")
    config.Execute.timeout = int(task["cell_timeout"])
    source = nbformat.read(root / "solutions" / task["assignment"] / f"{task['assignment']}.ipynb", as_version=4)
    config.GuardedExecute.timeout = int(task["cell_timeout"])
    # A huge output can take seconds to arrive on a loaded machine; the execute reply still says
    # whether the cell failed, so waiting longer and not raising loses no grade.
    config.GuardedExecute.iopub_timeout = 30
    config.GuardedExecute.raise_on_iopub_timeout = False
    config.GuardedExecute.setup_imports = import_lines(setup_cell(source).source)
    config.Autograde.autograde_preprocessors = [
        GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, CapOutputs, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata,
    ]
    config.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTests]
    return config


def _reason(graded_ok: bool, log: dict, feedback: dict | None) -> str | None:
    parts = []
    if not graded_ok:
        parts.append(f"could not be graded: {_first_error_line(log)}")
    elif feedback is not None and not feedback["success"]:
        parts.append(f"graded, but feedback failed: {_first_error_line(feedback)}")
    if REPAIRED:
        names = sorted(REPAIRED)
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        parts.append(f"replaced {listed}; put back before the tests ran")
    return "; ".join(parts) or None


def run_task(task_dir: Path) -> dict:
    """Autograde the one submission prepared in ``task_dir`` and write its feedback and ``result.json``."""
    from nbgrader.api import Gradebook

    task = json.loads((task_dir / "task.json").read_text())
    learner, assignment = task["learner"], task["assignment"]
    config = _config(task_dir, task)
    home = sandbox.make_home(task_dir / "home")
    os.environ[SANDBOX_ENV] = json.dumps({"memory": task.get("memory"), "home": str(home),
                                          "zygote": os.environ.get(zygote.SOCKET_ENV)})
    result = {**task, "score": 0.0, "cells": {}, "reason": None}
    try:
        api = _api(config)
        graded = api.autograde(assignment, learner, force=True, create=True)
        sandbox.kill_sandbox(home)  # nothing the kernel started may outlive it and touch the results
        feedback = None
        if graded["success"]:
            with Gradebook(config.CourseDirectory.db_url) as gradebook:
                notebook = gradebook.find_submission_notebook(assignment, assignment, learner)
                result["cells"] = {g.name: float(g.score) for g in notebook.grades if g.max_score}
            result["score"] = sum(result["cells"].values())
            feedback = api.generate_feedback(assignment, learner, force=True)
        result["reason"] = _reason(graded["success"], graded, feedback)
    finally:
        sandbox.remove_home(home)
    atomic_write_json(task_dir / "result.json", result)
    return result


if __name__ == "__main__":
    run_task(Path(sys.argv[1]))
