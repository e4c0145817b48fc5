"""Warm kernels: a kernel forked from the zygote is as sandboxed and as controllable as an exec'd one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import psutil
import pytest

from cvcourse import sandbox, zygote
from cvcourse.autograde import SANDBOX_ENV, SandboxedKernelManager

MEMORY = 3 * 2**30


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zygote")
    process = zygote.start(folder / "socket", dict(os.environ))
    assert process is not None, "the zygote did not start"
    yield folder / "socket", process
    zygote.stop(process)


def _kernel_session(socket, home, code: list[str], interrupt_after: float | None = None) -> list[dict]:
    """Start a sandboxed kernel through the zygote, run each snippet, return each one's stdout and status."""
    os.environ[SANDBOX_ENV] = json.dumps({"home": str(home), "memory": MEMORY, "zygote": str(socket)})

    async def session():
        manager = SandboxedKernelManager()
        await manager.start_kernel()
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=120)
        replies = []
        try:
            for snippet in code:
                out: list[str] = []
                hook = lambda msg: out.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None  # noqa: E731
                run = asyncio.ensure_future(client.execute_interactive(snippet, output_hook=hook, timeout=120))
                if interrupt_after is not None and "while True" in snippet:
                    await asyncio.sleep(interrupt_after)
                    await manager.interrupt_kernel()
                reply = await run
                replies.append({"stdout": "".join(out), "status": reply["content"]["status"],
                                "ename": reply["content"].get("ename")})
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)
        return replies

    try:
        return asyncio.run(session())
    finally:
        del os.environ[SANDBOX_ENV]


def test_kernel_is_forked_warm_and_sandboxed(factory, tmp_path):
    socket, process = factory
    home = sandbox.make_home(tmp_path / "home")
    outside = tmp_path / "outside.txt"
    replies = _kernel_session(socket, home, [
        "import os, sys, resource\nprint(os.getppid(), 'torch' in sys.modules, os.getcwd())",
        "print(resource.getrlimit(resource.RLIMIT_DATA)[0], os.environ['HOME'])",
        f"open({str(outside)!r}, 'w').write('x')",
        "open('inside.txt', 'w').write('x')",
    ])
    parent, preloaded, cwd = replies[0]["stdout"].split()
    assert int(parent) == process.pid and preloaded == "True" and cwd == str(home)
    assert replies[1]["stdout"].split() == [str(MEMORY), str(home)]
    if sandbox.isolated():
        assert replies[2]["ename"] == "PermissionError" and not outside.exists()
    assert replies[3]["status"] == "ok" and (home / "inside.txt").exists()


def test_cell_timeout_interrupts_a_forked_kernel(factory, tmp_path):
    socket, _ = factory
    home = sandbox.make_home(tmp_path / "home")
    replies = _kernel_session(socket, home, ["while True:\n    pass", "print('still here')"], interrupt_after=3)
    assert replies[0]["ename"] == "KeyboardInterrupt"
    assert replies[1]["stdout"].strip() == "still here"


def test_forked_kernel_carries_the_marker_and_dies_with_its_launcher(factory, tmp_path):
    socket, process = factory
    home = sandbox.make_home(tmp_path / "home")
    os.environ[SANDBOX_ENV] = json.dumps({"home": str(home), "memory": MEMORY, "zygote": str(socket)})

    async def start():
        manager = SandboxedKernelManager()
        await manager.start_kernel()
        return manager

    try:
        manager = asyncio.run(start())
    finally:
        del os.environ[SANDBOX_ENV]
    launcher = manager.provisioner.process.pid
    deadline = time.monotonic() + 60
    kernels = []
    while not kernels and time.monotonic() < deadline:
        kernels = [p for p in psutil.Process(process.pid).children() if p.environ().get(sandbox.MARKER) == str(home)]
        time.sleep(0.2)
    assert len(kernels) == 1, "the forked kernel does not carry its sandbox's marker"
    os.kill(launcher, signal.SIGKILL)
    kernels[0].wait(timeout=30)  # raises if the kernel outlives its launcher
    assert sandbox.orphans() == []
