"""The cvcourse command: user mistakes end in one line and exit status 2; doctor reports everything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


def cvcourse(*args: str, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvcourse.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.parametrize(("args", "needle"), [
    (("release", "99"), "unknown notebook '99'; choose from: 01-"),
    (("grade", "no-such-folder"), "no-such-folder is not a folder of submissions"),
    (("grade", "course", "--jobs", "0"), "--jobs, --memory, --timeout and --cell-timeout must be positive"),
])
def test_user_mistakes_get_one_line_and_status_2(args, needle):
    result = cvcourse(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_an_unreachable_dask_scheduler_gets_one_line(tmp_path):
    learner = tmp_path / "subs" / "ada"
    learner.mkdir(parents=True)
    first = sorted((ROOT / "course").iterdir())[0]
    (learner / f"{first.name}.ipynb").write_text((first / f"{first.name}.ipynb").read_text())
    result = cvcourse("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9")
    assert result.returncode == 2 and "no Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_outside_a_course_folder_says_so(tmp_path):
    result = cvcourse("release", cwd=tmp_path)
    assert result.returncode == 2 and "no course folder" in result.stderr and result.stderr.count("\n") == 1


def test_doctor_reports_device_profile_versions_data_and_weights():
    result = cvcourse("doctor", env={"CVCOURSE_PROFILE": "ci"})
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith(("data:", "weights:")) else ""): line
             for line in result.stdout.splitlines() if line.strip()}
    assert "cpu" in lines["device"] or "cuda" in lines["device"]
    assert lines["profile"].split()[1] == "ci"
    assert "2.14.1" in lines["torch"] and "0.9.6" in lines["nbgrader"]
    for name in ("data: digits", "data: mnist5k", "data: photos", "data: shapes", "weights: mobilenet_v2"):
        assert "PROBLEM" not in lines[name], lines[name]
    assert "1797 images" in lines["data: digits"] and "SHA-256 checked" in lines["weights: mobilenet_v2"]


def test_doctor_flags_a_wrong_profile_name_in_one_line():
    result = cvcourse("doctor", env={"CVCOURSE_PROFILE": "turbo"})
    assert result.returncode == 0
    assert "problem: unknown profile 'turbo'; choose one of: auto, ci, cpu, gpu" in result.stdout


def test_help_lists_the_commands():
    result = cvcourse("--help")
    assert all(command in result.stdout for command in ("release", "grade", "doctor"))
