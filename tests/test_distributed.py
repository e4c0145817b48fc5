"""cvcourse.distributed: worker processes in one gloo group, and torchrun, fail fast and clearly."""

from __future__ import annotations

import multiprocessing
import os
import re
import textwrap
import time

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cvcourse.distributed import run_workers, torchrun
from cvcourse.errors import CvcourseError


def _all_reduce_rank(rank, world_size, scale, offset=0.0):
    tensor = torch.full((3,), float(rank + 1)) * scale + offset
    dist.all_reduce(tensor)
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": tensor}


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_results_come_back_in_rank_order_from_one_group(world_size):
    results = run_workers(_all_reduce_rank, world_size, 2.0, offset=1.0, timeout=30)
    expected = sum(2.0 * (r + 1) + 1.0 for r in range(world_size))
    assert [r["rank"] for r in results] == list(range(world_size))
    assert all(r["world"] == world_size for r in results)
    assert all(torch.equal(r["sum"], torch.full((3,), expected)) for r in results)


def test_a_function_defined_in_exec_code_runs_and_ddp_works():
    # test_mutants runs notebook cells with exec: their functions cannot be imported by name.
    namespace = {"__name__": "__main__"}
    exec(compile(textwrap.dedent("""
        import torch
        from torch import nn
        def step(rank, world_size):
            torch.manual_seed(0)
            model = nn.Linear(4, 2)
            ddp = nn.parallel.DistributedDataParallel(model)
            x = torch.arange(16.0).reshape(4, 4)
            ddp(x[rank::world_size]).pow(2).sum().backward()
            return [p.grad for p in model.parameters()]
    """), "cell", "exec"), namespace)
    grads = run_workers(namespace["step"], 2, timeout=60)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x = torch.arange(16.0).reshape(4, 4)
    # DDP averages the two ranks' gradients: the mean of the per-shard sums.
    (model(x[0::2]).pow(2).sum() + model(x[1::2]).pow(2).sum()).div(2).backward()
    for rank in range(2):
        for got, param in zip(grads[rank], model.parameters()):
            assert torch.allclose(got, param.grad, atol=1e-5)


def _raise_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("boom\nsecond line")
    tensor = torch.ones(1)
    dist.all_reduce(tensor)  # rank 0 loses its peer here
    return tensor


def test_a_worker_exception_becomes_one_line_naming_the_rank_that_failed():
    start = time.monotonic()
    with pytest.raises(CvcourseError) as error:
        run_workers(_raise_on_rank_one, 2, timeout=30)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("rank 1 of 2 failed in _raise_on_rank_one: ValueError: boom")
    assert "test_distributed.py" in message and "second line" not in message
    assert time.monotonic() - start < 15
    assert multiprocessing.active_children() == []


def _sleep_on_rank_one(rank, world_size):
    if rank == 1:
        time.sleep(600)
    return rank


def test_a_timeout_ends_the_workers_instead_of_hanging():
    start = time.monotonic()
    with pytest.raises(CvcourseError, match=r"did not finish within 3 s on rank\(s\) 1 of 2"):
        run_workers(_sleep_on_rank_one, 2, timeout=3)
    assert time.monotonic() - start < 10
    assert multiprocessing.active_children() == []


def _exit_on_rank_zero(rank, world_size):
    if rank == 0:
        os._exit(7)
    return rank


def test_a_worker_that_dies_is_reported_with_its_exit_code():
    with pytest.raises(CvcourseError, match=r"rank 0 of 2 failed .*died \(exit code 7\)"):
        run_workers(_exit_on_rank_zero, 2, timeout=20)


def _abort_on_rank_one(rank, world_size):
    if rank == 1:
        os.abort()  # what gloo does when two ranks' messages do not match
    return rank


def test_a_worker_killed_by_a_signal_is_named():
    with pytest.raises(CvcourseError, match=r"rank 1 of 2 failed .*died \(SIGABRT\): gloo aborts"):
        run_workers(_abort_on_rank_one, 2, timeout=20)


def _unpicklable(rank, world_size):
    return lambda: rank


def test_an_unpicklable_result_and_a_bad_world_size_are_clear_errors():
    with pytest.raises(CvcourseError, match="cannot be pickled"):
        run_workers(_unpicklable, 1, timeout=20)
    for bad in (0, -1, 1.5):
        with pytest.raises(CvcourseError, match="world_size must be a positive integer"):
            run_workers(_unpicklable, bad)


def test_workers_use_the_requested_threads_and_see_the_callers_memory():
    marker = torch.randn(5)
    results = run_workers(lambda rank, world_size: (torch.get_num_threads(), marker.clone()), 2, threads=1)
    assert all(threads == 1 for threads, _ in results)
    assert all(torch.equal(copy, marker) for _, copy in results)


def test_torchrun_runs_a_script_on_two_processes(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import torch, torch.distributed as dist
        from cvcourse.train import init_distributed
        rank, world = init_distributed()
        value = torch.tensor([rank + 1.0])
        dist.all_reduce(value)
        print(f"rank {rank} of {world}: {value.item():g}", flush=True)
        dist.destroy_process_group()
    """))
    out = torchrun(script, 2, timeout=120)
    # The two ranks write to one pipe, so their lines may interleave: look for the records, not for lines.
    assert sorted(re.findall(r"rank \d of \d: \d+", out)) == ["rank 0 of 2: 3", "rank 1 of 2: 3"]


def test_torchrun_failure_is_one_line(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('the script is broken')\n")
    with pytest.raises(CvcourseError, match=r"torchrun broken.py failed with exit code 1: .*the script is broken") as error:
        torchrun(script, 1, timeout=120)
    assert "\n" not in str(error.value)
