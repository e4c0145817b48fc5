"""Teacher-student plumbing shared by the distillation notebooks (10 and 27).

A teacher is trained once (and cached), its logits on the training images are computed once, and a
student is trained by a small loop that hands each batch to a loss the notebook supplies. The losses
themselves (soft targets, KD, hints, attention transfer) are what the learner writes: they never live here.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from cvcourse.models import SmallCNN
from cvcourse.runtime import cache_dir
from cvcourse.train import fit

StudentLoss = Callable[..., torch.Tensor]


def mlp_student(in_features: int, hidden: int, num_classes: int = 10) -> nn.Sequential:
    """A one-hidden-layer perceptron: (N, C, H, W) or (N, D) with C*H*W = D = in_features -> (N, num_classes)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.numpy().tobytes() if isinstance(part, torch.Tensor) else repr(part).encode())
    return digest.hexdigest()[:16]


def train_teacher(
    train_data: TensorDataset,
    width: int = 16,
    epochs: int = 15,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | None = None,
    cache: bool = True,
    progress: bool = True,
) -> SmallCNN:
    """A :class:`~cvcourse.models.SmallCNN` teacher trained with Adam and cross-entropy, in eval mode on the CPU.

    Args:
        train_data: (images (N, C, H, W), labels (N,)) pairs.
        width: the teacher's first-stage width (stages are w, 2w, 4w).
        cache: keep the trained weights in the course cache, keyed by the data and every argument
            above, so a second notebook (or a rerun) loads them instead of training again.
    Returns:
        the trained teacher; the number of classes is the largest label + 1.
    """
    images, labels = train_data.tensors[:2]
    num_classes = int(labels.max()) + 1
    key = _fingerprint(images, labels, width, epochs, lr, batch_size, seed, torch.__version__)
    path = cache_dir("distill") / f"teacher-{key}.pt"
    torch.manual_seed(seed)
    teacher = SmallCNN(images.shape[1], num_classes, width)
    if cache and path.exists():
        teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        fit(teacher, TensorDataset(images, labels), epochs, torch.optim.Adam(teacher.parameters(), lr=lr),
            batch_size=batch_size, device=device, seed=seed, progress=progress, description="teacher")
        teacher.cpu()
        if cache:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(teacher.state_dict(), tmp)
            os.replace(tmp, path)  # atomic: parallel notebooks never read half a file
    return teacher.cpu().eval()


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Model outputs in eval mode, batch by batch, without gradients: (N, ...) -> (N, num_classes) on the CPU."""
    was_training = model.training
    model.eval()
    # A converted int8 model holds packed weights, not parameters: it runs on the CPU.
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    out = torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` (N, ...) whose arg-max output equals ``labels`` (N,)."""
    return float((logits_of(model, images).argmax(dim=1) == labels.cpu()).float().mean())


def stage_outputs(model: SmallCNN, images: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps after each block of ``model.features``: a list of (N, C_k, H_k, W_k), shallow to deep."""
    maps, x = [], images
    for block in model.features:
        x = block(x)
        maps.append(x)
    return maps


def fit_student(
    student: nn.Module,
    data: TensorDataset,
    loss_fn: StudentLoss,
    epochs: int,
    lr: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    description: str = "student",
) -> list[float]:
    """Train ``student`` with Adam, minimising ``loss_fn(student, *batch)`` over shuffled batches of ``data``.

    ``data`` holds whatever the loss needs, in order: for example (images, labels, teacher_logits), in which
    case ``loss_fn(student, x, y, t)`` receives one batch of each. Shuffling is seeded by ``seed``, so the
    same student, data, loss and seed give the same result. Runs on the device the student is on.

    Returns:
        the mean training loss of each epoch (a list of ``epochs`` floats); the student is left in eval mode.
    """
    device = next(student.parameters()).device
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    losses = []
    student.train()
    for _ in tqdm(range(epochs), desc=description, disable=not progress, unit="epoch", leave=False):
        total, count = 0.0, 0
        for batch in loader:
            batch = [b.to(device) for b in batch]
            loss = loss_fn(student, *batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch[0])
            count += len(batch[0])
        losses.append(total / count)
    student.eval()
    return losses
