"""Careful measurement of time, memory and arithmetic rate on the CPU and on CUDA GPUs.

Measuring a computation honestly takes more care than wrapping it in two clock readings:

* **Time**: run it a few times first (*warm-up*: lazy initialisation, memory-allocator growth, cuDNN
  autotuning, CPU caches); on a GPU wait for the queued kernels before reading the clock (CUDA runs
  asynchronously, so ``model(x)`` returns long before the GPU has finished); repeat, and report the
  *median*, which one descheduled run on a loaded machine cannot move. :func:`timeit` does all three.
* **Memory**: the peak of bytes allocated while the computation runs. On CUDA the caching allocator
  keeps that count (``torch.cuda.max_memory_allocated``). The CPU allocator keeps none, so on the CPU
  :func:`peak_memory` records every tensor allocation and free with the PyTorch profiler
  (``profile_memory=True``) and finds the peak of their running sum: the same quantity, for tensors.
  Memory that is not a tensor (Python objects, library workspaces that bypass PyTorch's allocator) is
  not counted on either device.
* **Rate**: achieved FLOP/s compared with a ceiling: the datasheet peak of common GPUs
  (:data:`GPU_SPECS`, :func:`peak_flops`, :func:`peak_bandwidth`) or the rate a large matrix product
  reaches on this machine (:func:`gemm_rate`), with the memory bandwidth of a large copy
  (:func:`copy_bandwidth`) for the roofline.

Graded formulas (FLOP counts, memory estimates, throughput) are never here: learners write those.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

# Kineto (the profiler's backend) prints start/stop lines to stderr at its default log level.
_QUIET_PROFILER = {"KINETO_LOG_LEVEL": "6"}


def _device(device) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def synchronize(device=None) -> None:
    """Wait until every kernel queued on ``device`` has finished; a no-op on the CPU.

    ``device``: a ``torch.device`` or string (``"cuda"``, ``"cuda:1"``, ``"cpu"``); None means the CPU.
    """
    device = _device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated calls, in seconds (warm-up calls excluded).

    Attributes:
        times: one entry per timed call, in the order they ran.
    """

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median seconds per call: the robust summary to report."""
        return float(statistics.median(self.times))

    @property
    def best(self) -> float:
        """Fastest call in seconds."""
        return float(min(self.times))

    @property
    def iqr(self) -> float:
        """Interquartile range in seconds (spread of the middle half): how noisy the machine was."""
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q3 - q1)

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3g} ms median of {len(self.times)} (IQR {self.iqr * 1e3:.2g} ms)"


def timeit(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 5, device=None,
           clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` calls timed one by one.

    On CUDA the device is synchronised before each start and after each call, so a time covers the
    kernels ``fn`` queued, not just the Python that queued them.

    Args:
        fn: the computation, called with no arguments.
        warmup: calls before timing starts (>= 0).
        repeats: timed calls (>= 1).
        device: where ``fn`` computes (None: the CPU).
        clock: seconds as a float; ``time.perf_counter`` unless a test supplies a fake one.
    Returns:
        a :class:`Timing` with ``repeats`` times in seconds.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = clock()
        fn()
        synchronize(device)
        times.append(clock() - start)
    return Timing(tuple(times))


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """Tensor memory used by one call, in bytes, counted from the moment the call started.

    Attributes:
        peak_bytes: the most bytes that were allocated at once during the call, beyond what was
            already allocated when it started.
        retained_bytes: bytes still allocated when the call returned (its result included), beyond
            what was allocated when it started.
        method: how it was measured (``"CUDA caching allocator"`` or ``"PyTorch profiler"``).
        result: what the call returned (kept so that ``retained_bytes`` means something).
    """

    peak_bytes: int
    retained_bytes: int
    method: str
    result: Any = dataclasses.field(default=None, repr=False, compare=False)


def _profiled_memory_events(fn: Callable[[], Any], device: torch.device):
    """Run ``fn`` under the profiler; return (result, [(time_ns, signed bytes)] for ``device``, sorted)."""
    # The autograd profiler is the layer under torch.profiler.profile: the same records, without the
    # seconds that torch.profiler's first start spends importing optional compiler back ends.
    from torch.autograd import profiler

    for key, value in _QUIET_PROFILER.items():
        os.environ.setdefault(key, value)
    use_device = "cuda" if device.type == "cuda" else None
    with profiler.profile(profile_memory=True, use_device=use_device) as prof:
        result = fn()
        synchronize(device)
    wanted = "CUDA" if device.type == "cuda" else "CPU"
    events = [(e.start_ns(), e.nbytes()) for e in prof.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith(wanted)]
    events.sort(key=lambda item: item[0])
    return result, events


def peak_memory(fn: Callable[[], Any], device=None) -> MemoryUse:
    """Peak and retained tensor memory of ``fn()`` on ``device`` (None: the CPU), in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the bytes
    allocated before the call. CPU: the running sum of the profiler's allocation (+) and free (-)
    records. Only allocations made *during* the call are seen on the CPU (the profiler does not know
    the size of an older block when it is freed), so build what you want to measure inside ``fn``:
    the model, its optimizer and the batch, not just the step. The profiler slows ``fn`` down: never
    time a call and measure its memory in the same run.
    """
    device = _device(device)
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        retained = torch.cuda.memory_allocated(device) - before
        return MemoryUse(int(peak), int(retained), "CUDA caching allocator", result)
    result, events = _profiled_memory_events(fn, device)
    running = list(itertools.accumulate(nbytes for _, nbytes in events))
    return MemoryUse(int(max([0, *running])), int(running[-1]) if running else 0, "PyTorch profiler", result)


def memory_timeline(fn: Callable[[], Any], device=None) -> tuple[np.ndarray, np.ndarray]:
    """Tensor memory allocated over time while ``fn()`` runs, from the profiler's records.

    Returns ``(seconds, bytes)``: two 1-D arrays of equal length, one point per allocation or free,
    seconds since the first record and bytes allocated since the call started (see :func:`peak_memory`
    for what is counted). The profiler slows ``fn`` down, so the time axis shows order, not speed.
    """
    _, events = _profiled_memory_events(fn, _device(device))
    if not events:
        return np.zeros(1), np.zeros(1)
    stamps = np.array([t for t, _ in events], dtype=np.float64)
    return (stamps - stamps[0]) / 1e9, np.cumsum([b for _, b in events]).astype(np.float64)


# Datasheet numbers, dense (no structured sparsity), boost clocks. FLOP/s in TFLOP/s by number format:
# "fp32" on CUDA cores, "tf32"/"bf16"/"fp16" on tensor cores (fp32 accumulation); bandwidth in TB/s.
# Patterns are matched against torch.cuda.get_device_name() in this order, so specific names come first.
GPU_SPECS: list[tuple[str, str, dict[str, float]]] = [
    (r"H100.*PCIe", "NVIDIA H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "tb_per_s": 2.0}),
    (r"H100.*NVL", "NVIDIA H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "tb_per_s": 3.9}),
    (r"H100", "NVIDIA H100 SXM", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "tb_per_s": 3.35}),
    (r"H200", "NVIDIA H200 SXM", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "tb_per_s": 4.8}),
    (r"A100.*80\s?GB", "NVIDIA A100 80GB", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "tb_per_s": 2.0}),
    (r"A100", "NVIDIA A100 40GB", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "tb_per_s": 1.555}),
    (r"L40S", "NVIDIA L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0, "tb_per_s": 0.864}),
    (r"\bL4\b", "NVIDIA L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "tb_per_s": 0.3}),
    (r"\bA10\b", "NVIDIA A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0, "tb_per_s": 0.6}),
    (r"RTX 4090", "GeForce RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "tb_per_s": 1.008}),
    (r"RTX 3090", "GeForce RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0, "tb_per_s": 0.936}),
    (r"V100", "NVIDIA V100 SXM2", {"fp32": 15.7, "fp16": 125.0, "tb_per_s": 0.9}),
    (r"\bT4\b", "NVIDIA T4", {"fp32": 8.1, "fp16": 65.0, "tb_per_s": 0.32}),
]

_FORMATS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def gpu_spec(name: str) -> tuple[str, dict[str, float]] | None:
    """The datasheet entry ``(canonical name, numbers)`` for a CUDA device name, or None if unknown."""
    for pattern, canonical, numbers in GPU_SPECS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return canonical, numbers
    return None


def peak_flops(name: str, dtype: torch.dtype | str = torch.float32) -> float | None:
    """Datasheet peak in FLOP/s of the GPU called ``name`` for one number format, or None.

    ``dtype``: ``torch.float32`` (CUDA cores), ``"tf32"``, ``torch.bfloat16`` or ``torch.float16``
    (tensor cores). None when the device is not in :data:`GPU_SPECS` (a CPU, say) or has no such
    format (bf16 on a V100 or T4).
    """
    spec = gpu_spec(name)
    key = dtype if isinstance(dtype, str) else _FORMATS.get(dtype)
    if spec is None or key not in spec[1]:
        return None
    return spec[1][key] * 1e12


def peak_bandwidth(name: str) -> float | None:
    """Datasheet memory bandwidth in bytes/s of the GPU called ``name``, or None if unknown."""
    spec = gpu_spec(name)
    return None if spec is None else spec[1]["tb_per_s"] * 1e12


def device_name(device=None) -> str:
    """A readable name: the CUDA device's product name, or the CPU's model name and thread count."""
    device = _device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def gemm_rate(n: int = 1024, device=None, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """FLOP/s of an ``n x n`` by ``n x n`` matrix product on ``device``: the practical peak.

    A large square product is the most efficient kernel a library has; few real layers beat it.
    Counts 2 n^3 FLOPs per product (a multiply and an add per term); median of ``repeats`` timed
    products after one warm-up.
    """
    device = _device(device)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    timing = timeit(lambda: a @ b, warmup=1, repeats=repeats, device=device)
    return 2.0 * n**3 / timing.median


def copy_bandwidth(nbytes: int = 1 << 26, device=None, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s of copying ``nbytes`` (read + write) within ``device``'s memory.

    Use a size well above the last-level cache (64 MiB by default) to measure memory, not cache.
    Counts 2 * nbytes moved per copy; median of ``repeats`` after one warm-up.
    """
    device = _device(device)
    source = torch.ones(nbytes // 4, device=device)
    target = torch.empty_like(source)
    timing = timeit(lambda: target.copy_(source), warmup=1, repeats=repeats, device=device)
    return 2.0 * source.numel() * 4 / timing.median
