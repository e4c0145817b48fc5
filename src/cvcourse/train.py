"""One training loop for classifiers and dense predictors: ``fit``, ``evaluate`` and ``predict``.

A model maps inputs (N, ...) to outputs; ``loss_fn(outputs, targets)`` trains it and ``metric(outputs,
targets)`` scores it: accuracy by default, which covers labels (N,) and class maps (N, H, W) alike, or any
per-example score such as a Dice coefficient on (N, 1, D, H, W) volumes. On CUDA it uses bfloat16
autocast and channels-last memory by default. Launched with ``torchrun``, ``fit`` trains with
DistributedDataParallel: each process sees its shard of the data.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from cvcourse.runtime import device as default_device

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``metric(outputs, targets)`` -> per-example scores (B,), or one score for the whole batch.
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example accuracy of the arg-max over axis 1.

    Scores (B, C) and labels (B,) give hits (B,) in {0, 1}; scores (B, C, *S) and class maps (B, *S)
    give the fraction of positions right (pixel accuracy), (B,).
    """
    hits = (outputs.argmax(1) == targets).float()
    return hits.flatten(1).mean(1) if hits.ndim > 1 else hits


def metric_name(metric: Metric) -> str:
    """The name a metric is recorded under: its function name, or "metric" for a lambda."""
    name = getattr(metric, "__name__", "")
    return name if name.isidentifier() else "metric"


def _batch_score(metric: Metric, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """Sum of a batch's per-example scores and their count; a single batch score counts for each example."""
    value = torch.as_tensor(metric(outputs, targets), dtype=torch.float64).detach()
    if value.ndim == 0:
        return value.item() * len(targets), len(targets)
    return value.sum().item(), value.numel()


@dataclasses.dataclass
class History:
    """Per-epoch record of :func:`fit`: mean training loss and metric, validation loss and metric, wall seconds.

    ``metric`` names what ``train_metric`` and ``val_metric`` hold ("accuracy" unless ``fit`` got another).
    """

    metric: str = "accuracy"
    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_metric: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_metric: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)


def init_distributed() -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo otherwise); return (rank, world size).

    Outside ``torchrun`` it does nothing and returns (0, 1).
    """
    if "RANK" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _loader(data: Dataset | DataLoader, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """Use a DataLoader as given; wrap a Dataset (sharded across processes under DDP)."""
    if isinstance(data, DataLoader):
        return data
    if _is_distributed():
        return DataLoader(data, batch_size=batch_size, sampler=DistributedSampler(data, shuffle=shuffle, seed=seed))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    loss_fn: LossFn = F.cross_entropy,
    metric: Metric | None = accuracy,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Mean loss and mean metric of ``model`` on ``data`` of (input, target) pairs, in eval mode.

    Returns:
        ``{"loss": ..., name: ...}`` with ``name`` from :func:`metric_name` ("accuracy" by default);
        only the loss when ``metric`` is None.
    """
    device = device or default_device()
    model.to(device).eval()
    total_loss, total_score, scored, count = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for x, y in _loader(data, batch_size, shuffle=False, seed=0):
            x, y = x.to(device), y.to(device)
            outputs = model(x).float()
            total_loss += loss_fn(outputs, y).item() * len(y)
            count += len(y)
            if metric is not None:
                batch_sum, batch_count = _batch_score(metric, outputs, y)
                total_score, scored = total_score + batch_sum, scored + batch_count
    result = {"loss": total_loss / max(count, 1)}
    if metric is not None:
        result[metric_name(metric)] = total_score / max(scored, 1)
    return result


def predict(
    model: nn.Module,
    data: Dataset | DataLoader,
    batch_size: int = 256,
    device: torch.device | None = None,
    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Concatenated model outputs (N, ...) on the inputs of ``data``, in order, on the CPU.

    Args:
        postprocess: applied to each batch of outputs before they are gathered, e.g. an arg-max over
            classes that keeps only (N, H, W) class maps of dense scores in memory.
    """
    device = device or default_device()
    model.to(device).eval()
    postprocess = postprocess or (lambda outputs: outputs)
    with torch.no_grad():
        return torch.cat([postprocess(model(batch[0].to(device)).float()).cpu()
                          for batch in _loader(data, batch_size, False, 0)])


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: LossFn = F.cross_entropy,
    metric: Metric | None = accuracy,
    batch_size: int = 64,
    val_data: Dataset | DataLoader | None = None,
    device: torch.device | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    seed: int = 0,
    progress: bool = True,
    description: str = "training",
) -> History:
    """Train ``model`` on (input, target) pairs; return its :class:`History`.

    Args:
        optimizer: defaults to Adam at 1e-3 over the parameters that require gradients.
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar; cross-entropy fits labels and class maps.
        metric: recorded on the training batches and on ``val_data`` after each epoch; None records none.
        val_data: evaluated after every epoch with ``loss_fn`` and ``metric``.
        amp, channels_last: default to on for CUDA and off for the CPU (channels-last only for 2D models).
        progress: show a tqdm bar over epochs (only on rank 0 under DDP).
    """
    device = device or default_device()
    amp = device.type == "cuda" if amp is None else amp
    if channels_last is None:
        channels_last = device.type == "cuda" and all(p.dim() != 5 for p in model.parameters())
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = optimizer or torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    trained = nn.parallel.DistributedDataParallel(model) if _is_distributed() else model
    loader = _loader(train_data, batch_size, shuffle=True, seed=seed)
    history = History(metric=metric_name(metric) if metric is not None else "")
    rank0 = not _is_distributed() or dist.get_rank() == 0
    bar = tqdm(range(epochs), desc=description, disable=not (progress and rank0), unit="epoch")
    for epoch in bar:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        trained.train()
        start, total_loss, count, total_score, scored = time.perf_counter(), 0.0, 0, 0.0, 0
        for x, y in loader:
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                outputs = trained(x).float()
                loss = loss_fn(outputs, y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            count += len(y)
            if metric is not None:
                with torch.no_grad():
                    batch_sum, batch_count = _batch_score(metric, outputs, y)
                total_score, scored = total_score + batch_sum, scored + batch_count
        history.train_loss.append(total_loss / count)
        history.seconds.append(time.perf_counter() - start)
        postfix = {"loss": f"{history.train_loss[-1]:.3f}"}
        if metric is not None:
            history.train_metric.append(total_score / scored)
            postfix[history.metric] = f"{history.train_metric[-1]:.3f}"
        if val_data is not None:
            result = evaluate(model, val_data, loss_fn, metric, device=device)
            history.val_loss.append(result["loss"])
            if metric is not None:
                history.val_metric.append(result[history.metric])
                postfix[f"val_{history.metric}"] = f"{history.val_metric[-1]:.3f}"
        bar.set_postfix(postfix)
    return history
