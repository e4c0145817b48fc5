"""Run a function on several ``torch.distributed`` worker processes, from a notebook or a test.

:func:`run_workers` starts ``world_size`` processes on this machine, joins them into one process group
(gloo by default: it runs on the CPU), calls ``fn(rank, world_size, *args, **kwargs)`` in each and returns
what each rank returned, in rank order. It forks the workers instead of spawning fresh interpreters, so
``fn`` may be a function defined in a notebook cell (or in code run with ``exec``), which a spawned
process could not import by name; forking also saves the seconds a fresh ``import torch`` costs.
A worker that raises, dies or runs past the timeout becomes one clear :class:`CvcourseError` in the
caller, and every worker is ended before the call returns: the caller never hangs.

:func:`torchrun` launches a script the way a cluster job would (``torchrun --nproc_per_node N``) and
returns its output, turning a failure into a one-line error as well.

Forking needs a POSIX system (Linux, macOS); on Windows :func:`run_workers` raises a clear error.
"""

from __future__ import annotations

import datetime
import faulthandler
import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch._dynamo  # noqa: F401  (see below)
import torch.distributed as dist

from cvcourse.errors import CvcourseError

# DistributedDataParallel imports torch._dynamo on first use, which takes seconds and changes the state of
# several torch modules. Importing it here, once, spares every forked worker of every call that cost, and
# makes that state part of what a notebook's setup cell imports (the grader's integrity snapshot included).

HOST = "127.0.0.1"
GRACE_SECONDS = 2.0  # after one rank fails, how long the others get to report before they are ended


def _short(text: str, limit: int = 300) -> str:
    """The first line of ``text``, at most ``limit`` characters."""
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _where(error: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame of the caller's own code in a traceback, else the
    innermost frame ('' if there is none): the line to look at is rarely inside torch."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if f"{os.sep}torch{os.sep}" not in f.filename and "cvcourse" not in f.filename]
    frame = (own or frames or [None])[-1]
    return f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""


# Errors a rank gets when a *peer* left the group; the peer's own error is the one to report.
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Read error", "Write error",
              "Broken pipe", "Socket closed")


def _is_peer_lost(message: str) -> bool:
    return any(marker in message for marker in _PEER_LOST)


def _worker(fn, rank, world_size, port, backend, threads, timeout, args, kwargs, connection) -> None:
    """Body of one worker process: join the group, run ``fn``, send back ``(status, payload)`` bytes."""
    faulthandler.disable()  # a rank that gloo aborts is reported by the caller, without a dump of every thread
    try:
        torch.set_num_threads(threads)
        store = dist.TCPStore(HOST, port, world_size, False, datetime.timedelta(seconds=timeout))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout))
        try:
            result = fn(rank, world_size, *args, **kwargs)
        finally:
            dist.destroy_process_group()
        message = ("ok", result)
    except BaseException as error:  # noqa: BLE001 (any failure goes back to the caller as text)
        detail = str(error) or "(no message)"
        if _is_peer_lost(detail):
            detail = (f"{_PEER_LOST[0]}: another rank left a collective (it failed, or returned without "
                      "calling the same collective: every rank must call the same collectives in the same order)")
        message = ("error", f"{type(error).__name__}: {_short(detail)}{_where(error)}")
    try:
        payload = pickle.dumps(message)
    except Exception as error:  # noqa: BLE001 (an unpicklable result is the caller's mistake)
        payload = pickle.dumps(("error", f"its result cannot be pickled ({type(error).__name__}: {_short(str(error))})"))
    connection.send_bytes(payload)
    connection.close()


def run_workers(
    fn: Callable[..., Any],
    world_size: int,
    *args,
    timeout: float = 60.0,
    backend: str = "gloo",
    threads: int = 1,
    **kwargs,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args, **kwargs)`` on ``world_size`` processes in one process group.

    Inside ``fn`` the default process group is initialised, so ``torch.distributed`` calls
    (``all_reduce``, ``broadcast``, ``barrier``, ``DistributedDataParallel``) work as under ``torchrun``.
    Each worker gets a copy of the caller's memory at the moment of the call (the processes are forked),
    so ``fn``, ``args`` and globals need not be picklable; only the results travel back (pickled), so
    return tensors, numbers or lists of them, not modules with hooks or open files.

    Args:
        fn: the function each rank runs; its first two arguments are ``rank`` (0 .. world_size - 1) and
            ``world_size``.
        world_size: number of processes, >= 1.
        timeout: seconds for the whole call (start-up, ``fn`` and shut-down); also each collective's limit.
        backend: ``"gloo"`` (CPU tensors) or ``"nccl"`` (CUDA tensors, one GPU per rank; the workers must
            not have touched CUDA before the fork, so prefer :func:`torchrun` for NCCL).
        threads: intra-op threads per worker (``torch.set_num_threads``); 1 keeps the workers from
            fighting over the cores. More than 1 is safe only if the caller has not yet run multi-threaded
            OpenMP code: GNU OpenMP's thread pool does not survive a fork, and such a worker hangs until
            ``timeout``.

    Returns:
        list of length ``world_size``: what rank 0, 1, ... returned.

    Raises:
        CvcourseError: one line naming the rank and its error when a worker raised or died, or the ranks
            still running when the timeout passed. All workers are ended before it is raised.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise CvcourseError(f"world_size must be a positive integer, got {world_size!r}")
    if "fork" not in multiprocessing.get_all_start_methods():
        raise CvcourseError("run_workers forks worker processes, which this system does not support; "
                            "use cvcourse.distributed.torchrun with a script instead")
    context = multiprocessing.get_context("fork")
    # The rendezvous store lives in the caller: port 0 lets the system choose a free port, with no race.
    store = dist.TCPStore(HOST, 0, None, True, datetime.timedelta(seconds=timeout), wait_for_workers=False)
    processes, connections = [], []
    try:
        with warnings.catch_warnings():  # Python >= 3.12 warns about forking a multi-threaded process
            warnings.simplefilter("ignore", DeprecationWarning)
            for rank in range(world_size):
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker, name=f"cvcourse-rank{rank}",
                    args=(fn, rank, world_size, store.port, backend, threads, timeout, args, kwargs, send))
                process.start()
                send.close()
                processes.append(process)
                connections.append(receive)
        return _collect(fn, processes, connections, time.monotonic() + timeout, timeout)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        for connection in connections:
            connection.close()
        del store


def _death(exitcode: int | None) -> str:
    """Why a worker that sent nothing back ended, in words."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
        hint = (": gloo aborts a process whose messages do not match its peers' (a different size, or a "
                "different order of collectives); its message is in the error output") if name == "SIGABRT" else ""
        return f"the process died ({name}){hint}"
    return f"the process died (exit code {exitcode})"


def _collect(fn, processes, connections, deadline, timeout) -> list[Any]:
    """Wait for every rank's message; raise on the first failure or at the deadline."""
    world_size = len(processes)
    results: dict[int, Any] = {}
    failures: dict[int, str] = {}  # in the order they arrived
    pending = {connection: rank for rank, connection in enumerate(connections)}
    while pending:
        remaining = deadline - time.monotonic()
        if failures:  # give the other ranks a moment to report, then stop waiting for them
            remaining = min(remaining, GRACE_SECONDS)
        if remaining <= 0:
            break
        ready = multiprocessing.connection.wait(list(pending), timeout=remaining)
        if not ready:
            break
        for connection in ready:
            rank = pending.pop(connection)
            try:
                status, payload = pickle.loads(connection.recv_bytes())
            except (EOFError, OSError):
                processes[rank].join(1.0)
                status, payload = "error", _death(processes[rank].exitcode)
            if status == "ok":
                results[rank] = payload
            else:
                failures[rank] = payload
    name = getattr(fn, "__name__", "the function")
    if failures:
        # Report the first rank that failed on its own, not one that only lost its peers.
        rank = next((r for r, text in failures.items() if not _is_peer_lost(text)), next(iter(failures)))
        others = f"; {len(failures) - 1} other rank(s) failed too" if len(failures) > 1 else ""
        raise CvcourseError(f"rank {rank} of {world_size} failed in {name}: {failures[rank]}{others}")
    if pending:
        ranks = ", ".join(str(r) for r in sorted(pending.values()))
        raise CvcourseError(f"{name} did not finish within {timeout:g} s on rank(s) {ranks} of {world_size} "
                            "(a collective that not every rank calls waits forever); the workers were ended")
    return [results[rank] for rank in range(world_size)]


def torchrun(script: str | os.PathLike, nproc_per_node: int = 2, *script_args: str, timeout: float = 300.0,
             env: dict[str, str] | None = None) -> str:
    """Run ``torchrun --standalone --nproc_per_node N script args...`` and return its standard output.

    ``torchrun`` (``python -m torch.distributed.run``, from this Python) starts N processes and gives
    each the variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
    ``--standalone`` runs the rendezvous on this machine on a free port. The script joins the group
    with ``torch.distributed.init_process_group`` (see ``cvcourse.train.init_distributed``).

    Args:
        script: path of the Python file to run.
        nproc_per_node: processes to start.
        timeout: seconds before the whole job is ended.
        env: extra environment variables for the job (``OMP_NUM_THREADS`` defaults to 1 per process).

    Raises:
        CvcourseError: one line with the job's last error line when it fails or runs past ``timeout``.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={int(nproc_per_node)}", str(script), *map(str, script_args)]
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    except subprocess.TimeoutExpired:
        raise CvcourseError(f"torchrun {Path(script).name} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        # The script's own exception line ("ValueError: ..."), not torchrun's report that follows it.
        raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)(:|$)", line)
                  and "ChildFailedError" not in line]
        cause = _short((raised or lines or ["(no error output)"])[0 if raised else -1])
        raise CvcourseError(f"torchrun {Path(script).name} failed with exit code {done.returncode}: {cause}")
    return done.stdout
