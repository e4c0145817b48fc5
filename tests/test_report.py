"""`cvcourse report`: runs solutions notebooks, records time, memory, device and headlines (from output
metadata, never prose) against their targets, and fails in one line on a wrong profile or notebook."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import nbformat
import pytest

from conftest import ROOT
from cvcourse import report
from cvcourse.notebooks import code, markdown, notebook


def cvcourse(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvcourse.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


# ---------------------------------------------------------------- the verdict on a headline


@pytest.mark.parametrize(("record", "expected"), [
    (dict(value=0.91, target=0.9), "pass"),
    (dict(value=0.9, target=0.9), "pass"),  # reaching the target exactly counts
    (dict(value=0.89, target=0.9), "miss"),
    (dict(value=3.0, target=5.0, higher_is_better=False), "pass"),
    (dict(value=5.0, target=5.0, higher_is_better=False), "pass"),
    (dict(value=7.5, target=5.0, higher_is_better=False), "miss"),
    (dict(value=math.nan, target=0.5), "miss"),
    (dict(value=math.nan, target=0.5, higher_is_better=False), "miss"),
    (dict(value=0.3, target=None), None),
])
def test_verdict(record, expected):
    assert report.verdict(record) == expected


def test_only_the_ci_profile_goes_unjudged():
    assert [report.judged(p) for p in report.PROFILES] == [False, True, True]


def fake_report(profile: str) -> dict:
    headlines = [dict(name="accuracy", value=0.95, target=0.9, higher_is_better=True, unit="", verdict="pass"),
                 dict(name="p99 latency", value=7.0, target=5.0, higher_is_better=False, unit=" ms", verdict="miss"),
                 dict(name="gap", value=0.01, target=None, unit="", verdict=None)]
    return {"profile": profile, "judged": report.judged(profile), "notebooks": [
        dict(notebook="01-a", device="cpu", wall_s=12.0, peak_rss_mb=900.0, peak_gpu_mb=None, status="ok", error=None,
             headlines=headlines),
        dict(notebook="02-b", device="cpu", wall_s=250.0, peak_rss_mb=2048.0, peak_gpu_mb=None, status="error",
             error="AssertionError: hidden: stride 2", headlines=[]),
    ]}


def test_markdown_table_judges_cpu_and_only_records_ci():
    cpu = report.markdown(fake_report("cpu"), links={"01-a": "course/01-a/01-a.ipynb"})
    lines = cpu.splitlines()
    assert lines[0].startswith("| notebook | device | wall time | peak memory | headline")
    assert "GPU" not in lines[0], "no GPU column when nothing ran on a GPU"
    assert "[01-a](course/01-a/01-a.ipynb)" in lines[2] and "12.0 s" in lines[2] and "900 MiB" in lines[2]
    assert lines[2].endswith("| accuracy | 0.95 | \u2265 0.9 | **pass** |")
    assert lines[3].endswith("| p99 latency | 7 ms | \u2264 5 ms | **miss** |")
    assert lines[4].endswith("| gap | 0.01 |  | no target |")
    assert "4.2 min" in lines[5] and "2.00 GiB" in lines[5] and "**failed**: AssertionError: hidden: stride 2" in lines[5]
    ci = report.markdown(fake_report("ci"))
    assert "(pass, not judged)" in ci and "(miss, not judged)" in ci and "**pass**" not in ci
    assert report.summary(fake_report("cpu")) == ("2 notebooks in the cpu report, 1 failed; "
                                                  "1 of 2 headlines reach their targets")


def test_a_wall_time_measured_on_a_busy_machine_says_so():
    busy = fake_report("cpu")
    busy["machine"] = {"cpus": 2}
    busy["notebooks"][0]["load_avg"] = 8.5   # more runnable processes than cores: times are stretched
    busy["notebooks"][1]["load_avg"] = 2.6   # the notebook's own two workers on two cores: no mark
    lines = report.markdown(busy).splitlines()
    assert "12.0 s (busy: load 8.5 on 2 cores)" in lines[2]
    assert "busy" not in lines[5] and "4.2 min" in lines[5]


def test_headlines_come_from_output_metadata_only():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("display_data", data={"text/markdown": "**accuracy: 0.99**; target \u2265 0.5"}),
        nbformat.v4.new_output("display_data", data={"text/markdown": "**loss: 0.1**"},
                               metadata={"cvcourse": {"headline": {"name": "loss", "value": 0.1, "target": 0.2,
                                                                   "higher_is_better": False}}}),
    ]
    assert [h["name"] for h in report.headlines(nb)] == ["loss"]


# ---------------------------------------------------------------- a course of tiny notebooks


def tiny_course(tmp_path, cells_by_name: dict[str, list]) -> dict:
    """A course folder with the given solutions notebooks; returns the environment that points at it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    for name, cells in cells_by_name.items():
        folder = tmp_path / "solutions" / name
        folder.mkdir(parents=True)
        nbformat.write(notebook([markdown(f"# Q{int(name[:2])}. A tiny notebook"), *cells]),
                       str(folder / f"{name}.ipynb"))
    return {"CVCOURSE_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}


HEADLINES = textwrap.dedent("""
    from cvcourse.results import headline
    from cvcourse.runtime import device
    DEVICE = device()
    print("**accuracy: 0.01**")  # prose that looks like a headline is never read
    headline("accuracy", 0.75, target=0.7)
    headline("latency", 12.0, target=10.0, higher_is_better=False, unit=" ms")
    ballast = bytearray(300 * 2**20)  # 300 MiB the memory peak must see
    ballast[::4096] = b"x" * len(ballast[::4096])
""")


@pytest.mark.slow
def test_report_judges_headlines_in_the_cpu_profile_and_notes_a_failure(tmp_path):
    env = tiny_course(tmp_path / "course", {
        "98-tiny": [code(HEADLINES)],
        "99-broken": [code("raise ValueError('the data are missing')")],
    })
    out = tmp_path / "reports"
    result = cvcourse("report", "--profile", "cpu", "--out", str(out), env=env)
    assert (tmp_path / "course" / "book" / "_build" / ".jupyter_cache-cpu").is_dir(), "cached for the book"
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "cvcourse report: 1 notebook(s) failed: 99-broken (ValueError: the data are missing)")
    data = json.loads((out / "report-cpu.json").read_text())
    assert data["profile"] == "cpu" and data["judged"] is True and data["machine"]["cpus"] >= 1
    tiny, broken = data["notebooks"]
    assert tiny["notebook"] == "98-tiny" and tiny["status"] == "ok" and tiny["device"] == "cpu"
    assert tiny["peak_rss_mb"] > 300, "the kernel's 300 MiB allocation is in the peak"
    assert 0 < tiny["wall_s"] < 120 and tiny["peak_gpu_mb"] is None
    assert [(h["name"], h["value"], h["verdict"], h["met"]) for h in tiny["headlines"]] == [
        ("accuracy", 0.75, "pass", True), ("latency", 12.0, "miss", False)]
    assert broken["status"] == "error" and broken["error"] == "ValueError: the data are missing"
    table = (out / "report-cpu.md").read_text()
    assert "| accuracy | 0.75 | \u2265 0.7 | **pass** |" in table and "| latency | 12 ms | \u2264 10 ms | **miss** |" in table
    assert "| accuracy |" in result.stdout and "headlines reach their targets" in result.stdout


def test_a_run_of_some_notebooks_keeps_the_others(tmp_path, monkeypatch):
    env = tiny_course(tmp_path / "course", {"97-a": [code("1")], "98-b": [code("2")]})
    root = tmp_path / "course"

    def fake_run(path, profile, cell_timeout, progress=None, book_cache=None):
        return {"notebook": path.stem, "status": "ok", "error": None, "wall_s": float(path.stem[:2]),
                "headlines": [], "device": "cpu", "peak_rss_mb": 1.0, "peak_gpu_mb": None}

    monkeypatch.setattr(report, "run_notebook", fake_run)
    out = tmp_path / "reports"
    report.run(root, "ci", None, out, show_progress=False)
    _, ran, json_path, _ = report.run(root, "ci", ["97"], out, show_progress=False)
    assert [e["notebook"] for e in ran] == ["97-a"]
    assert [e["notebook"] for e in json.loads(json_path.read_text())["notebooks"]] == ["97-a", "98-b"]
    _, _, json_path, _ = report.run(root, "ci", ["97"], out, fresh=True, show_progress=False)
    assert [e["notebook"] for e in json.loads(json_path.read_text())["notebooks"]] == ["97-a"]
    assert env  # the environment is only for subprocesses


@pytest.mark.slow
def test_report_runs_a_course_notebook_in_the_ci_profile(tmp_path):
    out = tmp_path / "reports"
    result = cvcourse("report", "--profile", "ci", "16", "--out", str(out), "--no-book-cache",
                      env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cell/s" in result.stderr or "s/cell" in result.stderr, "a progress bar"
    data = json.loads((out / "report-ci.json").read_text())
    assert data["profile"] == "ci" and data["judged"] is False
    (entry,) = data["notebooks"]
    assert entry["notebook"] == "16-spatial-pooling" and entry["number"] == 16 and entry["status"] == "ok"
    assert entry["title"].startswith("Q16. ") and entry["device"] == "cpu"
    assert 0 < entry["wall_s"] < 300 and entry["peak_rss_mb"] > 100
    assert entry["headlines"], "the notebook records its headline with cvcourse.results.headline"
    for record in entry["headlines"]:
        assert record["profile"] == "ci" and record["met"] is None  # ci sizes are not judged
        assert record["verdict"] == report.verdict(record) and isinstance(record["value"], float)
    assert "(pass, not judged)" in (out / "report-ci.md").read_text() or "(miss, not judged)" in (
        out / "report-ci.md").read_text()


@pytest.mark.parametrize(("args", "needle"), [
    (("report", "--profile", "turbo"), "cvcourse report: error: unknown profile 'turbo'; choose one of: ci, cpu, gpu"),
    (("report", "--profile", "ci", "99"), "cvcourse report: error: unknown notebook '99'; choose from: 01-"),
])
def test_report_mistakes_get_one_line_and_status_2(args, needle, tmp_path):
    result = cvcourse(*args, "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(needle) and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "nothing runs or is written"
