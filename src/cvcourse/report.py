"""``cvcourse report``: run solutions notebooks under a profile and tabulate time, memory and headlines.

Each notebook runs top to bottom in its own kernel process. While it runs, a sampler adds up the
resident memory of the kernel and every process it starts (DDP workers, data loaders); the peak of
that sum is the notebook's peak memory. On a GPU the kernel's own ``torch.cuda`` peak is read at the
end. Headline numbers come from the output metadata that :func:`cvcourse.results.headline` writes
(``{"cvcourse": {"headline": {...}}}``), never from the notebook's prose.

The result is one JSON file and one Markdown table per profile (``report-ci.json``, ``report-cpu.md``,
...). A run over some notebooks updates their entries in an existing report of the same profile and
keeps the others, so a long ``cpu`` report can be built up over several runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
import threading
import time
from pathlib import Path

from cvcourse.errors import CvcourseError, unknown_choice
from cvcourse.results import METADATA_KEY

PROFILES = ("ci", "cpu", "gpu")
SCHEMA = 1
PROBE_KEY = "report_probe"
# Run after the notebook's last cell: the kernel's own peak memory (exact, unlike sampling) and the
# GPU allocator's peak. Only reads state; its output is not kept anywhere.
PROBE_SOURCE = f"""
import json as _json, resource as _resource, sys as _sys
_probe = {{"self_maxrss_kb": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss,
          "children_maxrss_kb": _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss,
          "device": str(globals().get("DEVICE", "cpu"))}}
_torch = _sys.modules.get("torch")
if _torch is not None and _torch.cuda.is_available() and _torch.cuda.is_initialized():
    _probe["gpu_peak_allocated"] = int(_torch.cuda.max_memory_allocated())
    _probe["gpu_peak_reserved"] = int(_torch.cuda.max_memory_reserved())
    _probe["gpu_name"] = _torch.cuda.get_device_name(0)
from IPython.display import display as _display
_display({{"text/plain": "probe"}}, raw=True, metadata={{"{METADATA_KEY}": {{"{PROBE_KEY}": _probe}}}})
"""


# ---------------------------------------------------------------- judging headlines


def verdict(record: dict) -> str | None:
    """``"pass"`` or ``"miss"`` for a headline record with a target, ``None`` without one.

    A value equal to its target passes, whichever direction is better. The verdict is computed for
    every profile; :func:`judged` says whether it counts (the ``ci`` profile's sizes are too small).
    """
    target = record.get("target")
    if target is None:
        return None
    value = float(record["value"])
    if value != value:  # NaN never reaches a target
        return "miss"
    ok = value >= float(target) if record.get("higher_is_better", True) else value <= float(target)
    return "pass" if ok else "miss"


def judged(profile: str) -> bool:
    """Targets are set for the ``cpu`` and ``gpu`` profiles; ``ci`` only records the numbers."""
    return profile != "ci"


def headlines(nb) -> list[dict]:
    """Every headline record of an executed notebook, in order, from its outputs' metadata."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get(METADATA_KEY, {}).get("headline")
            if record is not None:
                found.append(dict(record))
    return found


# ---------------------------------------------------------------- memory of a process tree


class TreeMemorySampler:
    """Samples the summed RSS of a process and all its descendants in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # it ended between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


# ---------------------------------------------------------------- running one notebook


def _title(nb) -> str:
    first = nb.cells[0].source.splitlines()[0] if nb.cells and nb.cells[0].cell_type == "markdown" else ""
    return re.sub(r"^#+\s*", "", first).strip()


def _error_line(error: Exception) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        return f"{ename}: {evalue}".strip().splitlines()[0][:300]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"[:300]


def _polling(get_msg, step: float = 0.5):
    """``get_msg`` that waits in short polls instead of one long one.

    A cell that displays ipywidgets can leave a long ``get_msg`` waiting for ever although its reply has
    arrived (jupyter/nbclient#312); a short poll sees the message at the next try.
    """
    from queue import Empty

    async def wait(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = step if deadline is None else min(step, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return wait


def run_notebook(path: Path, profile: str, cell_timeout: float, progress=None, book_cache: Path | None = None) -> dict:
    """Execute one notebook in a fresh kernel under ``profile``; return its report entry.

    With ``book_cache``, a notebook that ran without error is also stored in that jupyter-cache folder
    (the one the instructor edition of the book reads), so the book need not run it again.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE))
    entry = {"notebook": path.stem, "number": int(path.stem[:2]), "title": _title(nb), "status": "ok",
             "error": None, "wall_s": None, "peak_rss_mb": None, "peak_gpu_mb": None, "gpu_name": None,
             "device": None, "headlines": [],
             "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    env_before = os.environ.get("CVCOURSE_PROFILE")
    os.environ["CVCOURSE_PROFILE"] = profile  # the kernel inherits the environment it is started with
    samplers: list[TreeMemorySampler] = []

    def kernel_started(**_) -> None:  # the kernel process exists: watch its memory from now on
        samplers.append(TreeMemorySampler(client.km.provisioner.pid).__enter__())
        for channel in (client.kc.shell_channel, client.kc.iopub_channel):
            channel.get_msg = _polling(channel.get_msg)

    def cell_done(**_) -> None:
        if progress is not None:
            progress(1)

    # The same path as nbconvert --execute and nbgrader: one kernel, cells in order, stop at an error.
    # No timing metadata in the cells: jupyter-cache hashes cell metadata, and the book's copy has none.
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", on_notebook_start=kernel_started,
                            record_timing=False,
                            on_cell_executed=cell_done, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except Exception as error:  # a failing cell, or a kernel that died: note it, report the rest
        entry["status"], entry["error"] = "error", _error_line(error)
    finally:
        for sampler in samplers:
            sampler.__exit__(None, None, None)
        if env_before is None:
            os.environ.pop("CVCOURSE_PROFILE", None)
        else:
            os.environ["CVCOURSE_PROFILE"] = env_before
    entry["wall_s"] = round(time.perf_counter() - start, 2)
    # Other work on the machine stretches wall times and distorts speed measurements: keep the evidence.
    entry["load_avg"] = round(os.getloadavg()[0], 2)
    probe = next((o["metadata"][METADATA_KEY][PROBE_KEY] for o in nb.cells[-1].get("outputs", [])
                  if PROBE_KEY in o.get("metadata", {}).get(METADATA_KEY, {})), {})
    peak = max(max((s.peak for s in samplers), default=0),
               probe.get("self_maxrss_kb", 0) * 1024, probe.get("children_maxrss_kb", 0) * 1024)
    entry["peak_rss_mb"] = round(peak / 2**20, 1) if peak else None
    if "gpu_peak_allocated" in probe:
        entry["peak_gpu_mb"] = round(probe["gpu_peak_allocated"] / 2**20, 1)
        entry["gpu_name"] = probe.get("gpu_name")
    entry["device"] = probe.get("device")
    for record in headlines(nb):
        record["verdict"] = verdict(record)
        entry["headlines"].append(record)
    if book_cache is not None and entry["status"] == "ok":
        nb.cells.pop()  # the probe is not part of the notebook
        cache_for_book(nb, path, book_cache, entry["wall_s"])
    return entry


def cache_for_book(nb, path: Path, folder: Path, seconds: float) -> None:
    """Store an executed notebook in the jupyter-cache ``folder`` as MyST-NB would have cached it."""
    try:
        from jupyter_cache import get_cache
        from jupyter_cache.base import CacheBundleIn

        get_cache(str(folder)).cache_notebook_bundle(
            CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}), check_validity=False, overwrite=True)
    except Exception as error:  # the report stands without the cache
        print(f"cvcourse report: warning: could not cache {path.stem} for the book: {_error_line(error)}",
              file=sys.stderr)


# ---------------------------------------------------------------- the report


def _machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "platform": platform.platform(terse=True),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def check_profile(name: str) -> str:
    name = (name or "").strip().lower()
    if name not in PROFILES:
        raise unknown_choice("profile", name, PROFILES)
    return name


def load(path: Path) -> dict | None:
    """A report JSON file, or ``None`` when there is none."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def run(root: Path, profile: str, wanted: list[str] | None, out: Path, cell_timeout: float = 3600.0,
        fresh: bool = False, show_progress: bool = True,
        book_cache: bool = False) -> tuple[dict, list[dict], Path, Path]:
    """Run the chosen notebooks (default: all) and write ``report-<profile>.json`` and ``.md`` in ``out``.

    With ``book_cache``, the executed notebooks also go into ``book/_build/.jupyter_cache-<profile>``,
    where ``make book-instructor`` finds them.

    Returns the whole report, the entries of the notebooks run this time, and the paths of both files.
    Raises ``CvcourseError`` (one line) for an unknown profile or notebook before running anything.
    """
    from tqdm.auto import tqdm

    from cvcourse.grading import select_assignments

    profile = check_profile(profile)
    chosen = select_assignments(root, wanted)
    paths = [root / "solutions" / name / f"{name}.ipynb" for name in chosen]
    if not paths:
        raise CvcourseError(f"no notebooks in {root / 'solutions'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"report-{profile}.json", out / f"report-{profile}.md"

    import nbformat

    cells = sum(sum(c.cell_type == "code" for c in nbformat.read(str(p), as_version=4).cells) + 1 for p in paths)
    previous = None if fresh else load(json_path)
    kept = {e["notebook"]: e for e in (previous or {}).get("notebooks", []) if e["notebook"] not in chosen
            and (root / "solutions" / e["notebook"]).is_dir()}
    bar = tqdm(total=cells, unit="cell", disable=not show_progress, dynamic_ncols=True)
    entries: list[dict] = []
    for path in paths:
        bar.set_description(path.stem)
        cache = root / "book" / "_build" / f".jupyter_cache-{profile}" if book_cache else None
        entry = run_notebook(path, profile, cell_timeout, progress=bar.update, book_cache=cache)
        entries.append(entry)
        bar.write(f"{path.stem}: {entry['status']} in {entry['wall_s']:.0f} s"
                  + (f" ({entry['error']})" if entry["error"] else ""))
        # Written after every notebook, so a long run that stops early keeps what it measured.
        report = {"schema": SCHEMA, "profile": profile, "judged": judged(profile),
                  "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "machine": _machine(), "notebooks": sorted([*kept.values(), *entries], key=lambda e: e["notebook"])}
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        md_path.write_text(markdown(report) + "\n")
    bar.close()
    return report, entries, json_path, md_path


# ---------------------------------------------------------------- the table


def _number(value, unit: str = "") -> str:
    if value is None:
        return ""
    return f"{value:.4g}{unit}"


def _seconds(value) -> str:
    if value is None:
        return ""
    return f"{value:.1f} s" if value < 100 else f"{value / 60:.1f} min"


def _mebibytes(value) -> str:
    if value is None:
        return ""
    return f"{value:.0f} MiB" if value < 1024 else f"{value / 1024:.2f} GiB"


def _busy(entry: dict, report: dict) -> str:
    """A mark on the wall time of a notebook measured while the machine was busy with other work.

    A notebook's own threads and worker processes keep up to about one runnable process per core, so
    only a load above twice the cores says that something else competed with it.
    """
    load, cpus = entry.get("load_avg"), report.get("machine", {}).get("cpus") or 1
    return f" (busy: load {load:.1f} on {cpus} cores)" if load is not None and load > 2 * cpus else ""


def markdown(report: dict, links: dict[str, str] | None = None) -> str:
    """The report as a Markdown table, one row per headline (a notebook without one gets one row).

    The GPU memory column appears when some notebook ran on a GPU. ``links`` maps notebook ids to link
    targets (the book links each notebook to its page).
    """
    judge = report.get("judged", judged(report["profile"]))
    gpu = any(e.get("peak_gpu_mb") is not None for e in report["notebooks"])
    head = ["notebook", "device", "wall time", "peak memory", *(["peak GPU memory"] * gpu),
            "headline", "value", "target", "result"]
    align = ["---", "---", "---:", "---:", *(["---:"] * gpu), "---", "---:", "---:", "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for entry in report["notebooks"]:
        name = entry["notebook"]
        label = f"[{name}]({links[name]})" if links and name in links else f"`{name}`"
        first = [label, entry.get("device") or "", _seconds(entry.get("wall_s")) + _busy(entry, report),
                 _mebibytes(entry.get("peak_rss_mb")), *([_mebibytes(entry.get("peak_gpu_mb"))] * gpu)]
        blank = [""] * len(first)
        if entry["status"] != "ok":
            error = (entry.get("error") or "").replace("|", "\\|")
            lines.append("| " + " | ".join(first + [f"**failed**: {error}", "", "", "**error**"]) + " |")
            continue
        for i, record in enumerate(entry["headlines"] or [None]):
            row = first if i == 0 else blank
            if record is None:
                cells = ["(no headline recorded)", "", "", ""]
            else:
                unit = record.get("unit") or ""
                direction = "\u2265 " if record.get("higher_is_better", True) else "\u2264 "
                target = "" if record.get("target") is None else direction + _number(record["target"], unit)
                result = record.get("verdict")
                if result is None:
                    result = "no target"
                elif not judge:
                    result = f"({result}, not judged)"
                else:
                    result = f"**{result}**"
                cells = [record["name"].replace("|", "\\|"), _number(record["value"], unit), target, result]
            lines.append("| " + " | ".join(row + cells) + " |")
    return "\n".join(lines)


def summary(report: dict) -> str:
    """One line: how many notebooks ran, failed, and how many headlines passed their targets."""
    entries = report["notebooks"]
    failed = [e["notebook"] for e in entries if e["status"] != "ok"]
    verdicts = [h.get("verdict") for e in entries for h in e["headlines"] if h.get("verdict")]
    text = (f"{len(entries)} notebook{'s' * (len(entries) != 1)} in the {report['profile']} report, "
            f"{len(failed)} failed; "
            f"{verdicts.count('pass')} of {len(verdicts)} headlines reach their targets")
    if not report.get("judged", True):
        text += " (not judged in the ci profile)"
    return text
