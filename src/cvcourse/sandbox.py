"""Process isolation for grading: each submission's kernel runs with limits, writing only to its home.

``python -m cvcourse.sandbox --home DIR [--memory BYTES] -- KERNEL COMMAND`` is the command the grader
starts instead of a plain kernel. Before it becomes the kernel it

- limits memory per process (``RLIMIT_DATA``: an allocation past it raises ``MemoryError`` in the
  learner's cell), file size and core dumps;
- with Linux's Landlock (kernel 5.13 or later, no root needed) allows writes only under its own home
  folder and a few devices, so a submission cannot touch the gradebook, the grader's output or another
  learner's folder; with Landlock ABI 6 or later it also cannot signal any process outside its sandbox
  (the grader, other learners' kernels);
- dies with its parent (the grading task), and carries a marker by which anything it leaves running is
  found and killed.

Reading world-readable files stays possible: keep the submissions folder private (``chmod 700``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import signal
import sys
from pathlib import Path

import psutil

MAX_FILE_BYTES = 1 << 30
MARKER = "CVCOURSE_KERNEL_HOME"   # environment variable naming the home of the sandbox a process belongs to
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
SHARED_MEMORY = "/dev/shm"       # torch DataLoader workers pass tensors through it

# Landlock (linux/landlock.h): system calls on x86-64 and arm64 alike, access rights, scopes.
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION, RULE_PATH_BENEATH = 1, 1
WRITE_FILE, TRUNCATE = 1 << 1, 1 << 14
DIRECTORY_WRITES = sum(1 << bit for bit in (4, 5, 6, 7, 8, 9, 10, 11, 12))  # remove and make anything
REFER = 1 << 13
SCOPE_SIGNAL = 1 << 1
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none, so writes are not confined)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)
    return max(0, version)


def isolated() -> bool:
    """True when kernels' writes are confined to their home folder (Landlock is available)."""
    return landlock_abi() >= 1


def confine_writes(writable: list[Path]) -> int:
    """Allow this process and its children to write only under ``writable`` (folders or files).

    Returns the Landlock ABI used (0: not available, nothing confined). From ABI 6 on, signals to
    processes outside the sandbox are refused too.
    """
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    file_rights = WRITE_FILE | (TRUNCATE if abi >= 3 else 0)
    folder_rights = file_rights | DIRECTORY_WRITES | (REFER if abi >= 2 else 0)
    attr = _RulesetAttr(folder_rights, 0, SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(attr) if abi >= 6 else 8  # older kernels know only the first field
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in writable:
            if not path.exists():
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(folder_rights if path.is_dir() else file_rights, fd)
                if libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(SYS_RESTRICT_SELF, ruleset, 0) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def make_home(home: Path) -> Path:
    """An empty home folder for one task's kernel: the one place its sandbox may write."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home.resolve()


def _sandbox_processes():
    """(process, its sandbox home) for every process started inside a sandbox."""
    for process in psutil.process_iter():
        try:
            home = process.environ().get(MARKER)
        except psutil.Error:
            continue
        if home and home.startswith("/") and process.pid != os.getpid():
            yield process, home


def orphans() -> list[int]:
    """Pids of sandboxed processes whose task is over (their home folder is gone)."""
    return [process.pid for process, home in _sandbox_processes() if not Path(home).exists()]


def kill_sandbox(home: Path) -> int:
    """Kill every process that belongs to the sandbox of ``home`` (what a kernel left behind)."""
    killed = 0
    for process, owner in _sandbox_processes():
        if owner == str(home):
            try:
                process.kill()
                killed += 1
            except psutil.Error:
                continue
    return killed


def remove_home(home: Path) -> None:
    kill_sandbox(home)
    shutil.rmtree(home, ignore_errors=True)


def _limit(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (safe as a ``preexec_fn``)."""
    try:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the grader's own clean-up has to do
        pass


def enter(home: Path, memory: int | None) -> None:
    """Put this process into the sandbox of ``home``: limits, a private home, confined writes."""
    if memory:
        _limit(resource.RLIMIT_DATA, memory)
    _limit(resource.RLIMIT_FSIZE, MAX_FILE_BYTES)
    _limit(resource.RLIMIT_CORE, 0)
    die_with_parent()
    cache = home / "cache"
    (home / "tmp").mkdir(exist_ok=True)
    os.environ.update({MARKER: str(home), "HOME": str(home), "TMPDIR": str(home / "tmp"),
                       "CVCOURSE_CACHE": str(cache), "MPLCONFIGDIR": str(cache / "matplotlib"),
                       "XDG_CACHE_HOME": str(cache), "IPYTHONDIR": str(home / ".ipython")})
    confine_writes([home, Path(SHARED_MEMORY), *map(Path, WRITABLE_DEVICES)])
    os.chdir(home)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cvcourse.sandbox")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--memory", type=int, help="bytes of data memory per process")
    parser.add_argument("--zygote", help="socket of a warm kernel factory (cvcourse.zygote) to fork from")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    home = args.home.resolve()
    if args.zygote:
        from cvcourse import zygote

        die_with_parent()
        status = zygote.launch(args.zygote, command, str(home), args.memory)
        if status is not None:
            sys.exit(status)
    enter(home, args.memory)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
