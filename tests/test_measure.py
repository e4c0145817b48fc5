"""cvcourse.measure: timing protocol, peak memory (CPU profiler and CUDA allocator), datasheet table."""

from __future__ import annotations

import math

import pytest
import torch

from cvcourse import measure


class FakeClock:
    """A clock that only moves when a fake computation says it took time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timeit_excludes_warmup_and_reports_the_median():
    clock = FakeClock()
    durations = iter([50.0, 50.0, 1.0, 2.0, 100.0, 3.0, 4.0])  # two slow warm-up calls, one outlier
    calls = []

    def work():
        calls.append(1)
        clock.now += next(durations)

    timing = measure.timeit(work, warmup=2, repeats=5, clock=clock)
    assert len(calls) == 7
    assert timing.times == (1.0, 2.0, 100.0, 3.0, 4.0)
    assert timing.median == 3.0 and timing.best == 1.0
    assert timing.iqr == pytest.approx(2.0)
    assert "median of 5" in str(timing)


def test_timeit_rejects_impossible_counts():
    with pytest.raises(ValueError):
        measure.timeit(lambda: None, repeats=0)
    with pytest.raises(ValueError):
        measure.timeit(lambda: None, warmup=-1)


def test_timeit_synchronises_cuda_around_every_timed_call(monkeypatch):
    """CUDA is asynchronous: the clock must be read only after the queued work has finished."""
    clock = FakeClock()
    pending = []
    events = []

    def fake_synchronize(device=None):  # the "GPU" finishes its queued work only here
        events.append("sync")
        clock.now += sum(pending)
        pending.clear()

    def launch():  # returns at once, like a kernel launch
        events.append("call")
        pending.append(0.25)

    monkeypatch.setattr(torch.cuda, "synchronize", fake_synchronize)
    timing = measure.timeit(launch, warmup=1, repeats=3, device="cuda", clock=clock)
    assert timing.times == (0.25, 0.25, 0.25)
    assert events[-3:] == ["sync", "call", "sync"]
    measure.synchronize("cpu")  # the CPU path must not touch CUDA
    measure.synchronize(None)
    assert events.count("sync") == 6


def test_peak_memory_on_the_cpu_is_exact_for_tensors():
    def work():
        a = torch.empty(250_000)  # 1,000,000 bytes
        b = torch.empty(500_000)  # 2,000,000 bytes: both alive at the peak
        del a
        c = torch.empty(25)  # 100 bytes, freed on return
        return b + 0 if c.numel() == 0 else b

    use = measure.peak_memory(work)
    assert use.method == "PyTorch profiler"
    assert use.peak_bytes == 3_000_000
    assert use.retained_bytes == 2_000_000
    assert use.result.shape == (500_000,)


def test_peak_memory_sees_temporaries_of_an_expression():
    def work():
        x = torch.ones(1000, 100)  # 400,000 bytes
        return (x * 2 + 1).sum()  # x * 2 is a 400,000-byte temporary, then + 1 another

    use = measure.peak_memory(work)
    assert 1_200_000 <= use.peak_bytes <= 1_200_100
    assert use.retained_bytes <= 100  # only the scalar result survives


def test_peak_memory_uses_the_cuda_allocator(monkeypatch):
    state = {"allocated": 1000, "peak": 5000, "reset": 0}

    def reset(device=None):
        state["reset"] += 1
        state["peak"] = state["allocated"]

    def work():
        state["peak"] = state["allocated"] + 700
        state["allocated"] += 300
        return "done"

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    use = measure.peak_memory(work, device="cuda")
    assert state["reset"] == 1
    assert (use.peak_bytes, use.retained_bytes, use.result) == (700, 300, "done")
    assert use.method == "CUDA caching allocator"


def test_memory_timeline_agrees_with_peak_memory():
    def work():
        kept = torch.empty(100_000)
        for _ in range(3):
            torch.empty(200_000).fill_(1.0)
        return kept

    seconds, allocated = measure.memory_timeline(work)
    assert seconds.shape == allocated.shape and len(seconds) >= 7
    assert (seconds[1:] >= seconds[:-1]).all() and seconds[0] == 0
    assert allocated.max() == 1_200_000 and allocated[-1] == 400_000


@pytest.mark.parametrize(
    ("name", "dtype", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989.4),
        ("NVIDIA H100 PCIe", torch.bfloat16, 756.0),
        ("NVIDIA H200", torch.float32, 67.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA A10", torch.bfloat16, 125.0),
        ("NVIDIA L4", torch.float16, 121.0),
        ("Tesla T4", torch.float16, 65.0),
    ],
)
def test_peak_flops_of_known_gpus(name, dtype, tflops):
    assert measure.peak_flops(name, dtype) == pytest.approx(tflops * 1e12)


def test_peak_table_does_not_confuse_similar_names_and_admits_ignorance():
    assert measure.gpu_spec("NVIDIA A100-SXM4-40GB")[0] == "NVIDIA A100 40GB"  # not the A10
    assert measure.gpu_spec("NVIDIA A100 80GB PCIe")[0] == "NVIDIA A100 80GB"
    assert measure.gpu_spec("NVIDIA H100 NVL")[0] == "NVIDIA H100 NVL"
    assert measure.peak_flops("Tesla V100-SXM2-16GB", torch.bfloat16) is None  # no bf16 on Volta
    assert measure.peak_flops("AMD EPYC 7B13", torch.float32) is None
    assert measure.peak_bandwidth("NVIDIA H200") == pytest.approx(4.8e12)
    assert measure.peak_bandwidth("unknown accelerator") is None
    for _, _, numbers in measure.GPU_SPECS:  # tensor cores are never slower than CUDA cores
        assert all(numbers[k] >= numbers["fp32"] for k in ("tf32", "bf16", "fp16") if k in numbers)


def test_rates_and_names_of_the_cpu():
    rate = measure.gemm_rate(128, repeats=3)
    bandwidth = measure.copy_bandwidth(1 << 20, repeats=3)
    assert math.isfinite(rate) and 1e6 < rate < 1e14
    assert math.isfinite(bandwidth) and 1e6 < bandwidth < 1e13
    assert "threads" in measure.device_name("cpu")
