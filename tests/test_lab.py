"""Smoke test: `make lab` starts JupyterLab on course/ with nbgrader's extensions, and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def lab():
    port, token = free_port(), secrets.token_hex(8)
    args = f"--no-browser --ServerApp.ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    process = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            get(f"{base}/api/status?token={token}")
            break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                pytest.fail(f"JupyterLab did not start: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield base, token
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def test_lab_serves_the_course_folder(lab):
    base, token = lab
    listing = json.loads(get(f"{base}/api/contents?token={token}"))
    served = {item["name"] for item in listing["content"]}
    expected = {p.name for p in (ROOT / "course").iterdir() if p.is_dir()}
    assert expected and expected <= served
    name = sorted(expected)[0]
    notebook = json.loads(get(f"{base}/api/contents/{name}/{name}.ipynb?token={token}"))
    assert notebook["type"] == "notebook"


def test_nbgrader_lab_extension_is_enabled(lab):
    base, token = lab
    page = get(f"{base}/lab?token={token}").decode()
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert "@jupyter/nbgrader" in [e["name"] for e in config["federated_extensions"]]
    assert not any(d.startswith("@jupyter/nbgrader") for d in config.get("disabledExtensions", []))


def test_nbgrader_server_extensions_answer(lab):
    base, token = lab
    assert json.loads(get(f"{base}/nbgrader_version?version=0.9.6&token={token}"))["success"] is True
