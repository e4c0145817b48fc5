"""Warm kernels for grading: fork each sandboxed kernel from a process that imported torch once.

Starting a Jupyter kernel and importing torch, torchvision and IPython costs a few seconds of CPU, paid
again for every submission: on a class of hundreds it is a large share of the grading time. A *zygote*
is one process per grading run that imports those libraries and then waits on a Unix socket. For each
kernel the sandbox launcher (:mod:`cvcourse.sandbox`) sends it the kernel's command, environment, limits
and standard streams; the zygote forks, and the child enters the sandbox exactly as an exec'd kernel
would (its own session, limits, private home, Landlock, dies with its launcher) and runs the kernel.
The launcher stays as the kernel's stand-in for Jupyter: it forwards signals (a cell timeout is a
SIGINT) and exits when the kernel does.

A forked process keeps the environment block it was exec'd with, which is where ``/proc/PID/environ``
and so :func:`cvcourse.sandbox.kill_sandbox` look for the sandbox marker. The zygote is therefore
exec'd with the marker last and padded, and each child writes its home into that block in place.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

SOCKET_ENV = "CVCOURSE_ZYGOTE"  # tells a grading task the socket of its run's zygote
PRELOAD = ("numpy", "torch", "torchvision", "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel")
MARKER_ROOM = 1024        # bytes kept in the exec'd environment for a child's sandbox home
MESSAGE_BYTES = 1 << 20   # largest request (command, environment, limits)
STARTUP_SECONDS = 120


# ---------------------------------------------------------------- the grader's side


def start(socket_path: Path, env: dict[str, str]):
    """Start a zygote listening on ``socket_path``; return its ``Popen`` once it accepts requests.

    Returns None (and the grader execs kernels as usual) when it cannot start.
    """
    import subprocess

    from cvcourse.sandbox import MARKER, die_with_parent

    env = {k: v for k, v in env.items() if k != MARKER}
    env[MARKER] = " " * MARKER_ROOM  # last: a child overwrites it in place (see module docs)
    process = subprocess.Popen([sys.executable, "-m", "cvcourse.zygote", str(socket_path)], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, preexec_fn=die_with_parent)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if socket_path.exists():
            return process
        time.sleep(0.05)
    stop(process)
    return None


def stop(process) -> None:
    """End a zygote and every kernel it forked that is still running."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except Exception:  # noqa: BLE001 (it must not outlive the run, whatever went wrong)
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the launcher's side


def launch(socket_path: str, command: list[str], home: str, memory: int | None) -> int | None:
    """Have the zygote run ``command`` (``python -m MODULE ARGS``) sandboxed in ``home``; relay until it ends.

    Returns the exit status for the launcher, or None when the zygote cannot serve this command (the
    caller then execs the kernel itself).
    """
    if len(command) < 3 or command[1] != "-m":
        return None
    request = json.dumps({"argv": command[2:], "env": dict(os.environ), "home": home, "memory": memory}).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(socket_path)
        socket.send_fds(connection, [request], [0, 1, 2])
        reply = connection.recv(64)
    except OSError:
        connection.close()
        return None
    if not reply:
        return None
    pid = int(reply)

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:  # the kernel holds the other end: it closes when the kernel (or its whole session) is gone
        try:
            if not connection.recv(64):
                return 0
        except InterruptedError:
            continue
        except OSError:
            return 1


# ---------------------------------------------------------------- the zygote


def _mark_environ(home: str) -> None:
    """Write ``home`` into the marker's room in this process's exec'd environment block."""
    import ctypes

    from cvcourse.sandbox import MARKER

    fields = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()
    env_start = int(fields[47])  # field 50 of proc(5); fields after the command name's ")" start at 3
    block = Path("/proc/self/environ").read_bytes()
    prefix = f"{MARKER}=".encode()
    at = block.rfind(prefix)
    value = home.encode()
    if at < 0 or len(value) >= MARKER_ROOM:
        raise OSError("no room for the sandbox marker in the environment block")
    ctypes.memmove(env_start + at + len(prefix), value + b"\0" * (MARKER_ROOM - len(value)), MARKER_ROOM)


def _watch(connection: socket.socket) -> None:
    """End this kernel when its launcher is gone (the grader's timeout killed it, or the task died)."""
    try:
        while connection.recv(64):
            pass
    except OSError:
        pass
    os._exit(1)


def _become_kernel(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: the kernel's streams, environment and sandbox; then run the kernel."""
    import runpy

    from cvcourse import sandbox

    os.setsid()
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote reaps automatically; a kernel must not
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    home = Path(request["home"])
    sandbox.enter(home, request["memory"])
    _mark_environ(str(home))
    random.seed()  # a fresh kernel would not share its random state with its siblings
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    connection.send(str(os.getpid()).encode())
    threading.Thread(target=_watch, args=(connection,), daemon=True).start()
    sys.argv = [request["argv"][0], *request["argv"][1:]]
    runpy.run_module(request["argv"][0], run_name="__main__", alter_sys=True)


def serve(socket_path: Path) -> None:
    """Import the heavy libraries once, then fork a kernel for every request until terminated."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    children: set[int] = set()

    def end(_signum, _frame):
        for pid in children:  # each kernel leads its own session: end it with whatever it started
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    partial = socket_path.with_name(socket_path.name + ".part")
    listener.bind(str(partial))
    listener.listen(64)
    partial.rename(socket_path)  # appears only once it accepts
    while True:
        connection, _ = listener.accept()
        try:
            message, fds, _, _ = socket.recv_fds(connection, MESSAGE_BYTES, 3)
            request = json.loads(message)
        except (OSError, ValueError):
            connection.close()
            continue
        pid = os.fork()
        if pid == 0:
            listener.close()
            try:
                _become_kernel(connection, request, fds)
            except BaseException as error:  # noqa: BLE001 (a child must never return into the loop)
                code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else 1
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            os._exit(0)
        children.add(pid)
        children.intersection_update(p for p in children if _alive(p))
        for fd in fds:
            os.close(fd)
        connection.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
