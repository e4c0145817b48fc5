"""A plain training loop for classifiers: ``fit`` and ``evaluate`` with a progress bar and a history.

On CUDA it uses bfloat16 autocast and channels-last memory by default. Launched with ``torchrun``,
``fit`` trains with DistributedDataParallel: each process sees its shard of the data.
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


@dataclasses.dataclass
class History:
    """Per-epoch training record: mean training loss and accuracy, validation metrics, wall seconds."""

    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_accuracy: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_accuracy: list[float] = dataclasses.field(default_factory=list)
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
    batch_size: int = 256,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of a classifier on ``data`` of (image, label) pairs."""
    device = device or default_device()
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in _loader(data, batch_size, shuffle=False, seed=0):
            x, y = x.to(device), y.to(device)
            logits = model(x).float()
            total_loss += loss_fn(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1)}


def predict(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 256, device=None) -> torch.Tensor:
    """Concatenated model outputs (N, ...) on the inputs of ``data``, on the CPU."""
    device = device or default_device()
    model.eval()
    with torch.no_grad():
        return torch.cat([model(batch[0].to(device)).float().cpu() for batch in _loader(data, batch_size, False, 0)])


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = 64,
    val_data: Dataset | DataLoader | None = None,
    device: torch.device | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    seed: int = 0,
    progress: bool = True,
    description: str = "training",
) -> History:
    """Train a classifier on (image, label) pairs; return its :class:`History`.

    Args:
        optimizer: defaults to Adam at 1e-3 over ``model.parameters()``.
        amp, channels_last: default to on for CUDA and off for the CPU.
        progress: show a tqdm bar over epochs (only on rank 0 under DDP).
    """
    device = device or default_device()
    amp = device.type == "cuda" if amp is None else amp
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    trained = nn.parallel.DistributedDataParallel(model) if _is_distributed() else model
    loader = _loader(train_data, batch_size, shuffle=True, seed=seed)
    history = History()
    rank0 = not _is_distributed() or dist.get_rank() == 0
    bar = tqdm(range(epochs), desc=description, disable=not (progress and rank0), unit="epoch")
    for epoch in bar:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        trained.train()
        start, total_loss, correct, count = time.perf_counter(), 0.0, 0, 0
        for x, y in loader:
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                logits = trained(x)
                loss = loss_fn(logits.float(), y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
        history.train_loss.append(total_loss / count)
        history.train_accuracy.append(correct / count)
        history.seconds.append(time.perf_counter() - start)
        postfix = {"loss": f"{history.train_loss[-1]:.3f}", "acc": f"{history.train_accuracy[-1]:.3f}"}
        if val_data is not None:
            metrics = evaluate(model, val_data, loss_fn, device=device)
            history.val_loss.append(metrics["loss"])
            history.val_accuracy.append(metrics["accuracy"])
            postfix["val_acc"] = f"{metrics['accuracy']:.3f}"
        bar.set_postfix(postfix)
    return history
