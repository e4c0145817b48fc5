"""Training with data augmentation: the plumbing, never the augmentations.

``Augmented`` redraws a per-image transform every time an image is read (for :func:`cvcourse.train.fit`);
``fit_mixed`` trains for a fixed number of steps with a batch transform that may return soft targets
(Mixup, CutMix). The augmentations themselves (flips, crops, colour jitter, Mixup, CutMix) are what
learners write, so they never live here.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class Augmented(Dataset):
    """``dataset`` with ``transform(image, generator)`` applied to each image as it is read.

    Every read draws fresh random parameters from one seeded ``torch.Generator``, so each epoch sees a
    new version of every image, and two runs with the same ``seed`` (and the same read order) see the
    same versions. Labels pass through unchanged.

    Shapes:
        dataset[i] = (image (C, H, W), label) -> (transform(image, generator), label).
    """

    def __init__(self, dataset: Dataset, transform: Transform, seed: int = 0):
        self.dataset, self.transform = dataset, transform
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int | None = None) -> "Augmented":
        """Restart the random stream (at ``seed``, or the original seed); returns self."""
        self.seed = self.seed if seed is None else seed
        self.generator.manual_seed(self.seed)
        return self

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image, self.generator), label


def uniform(low: float, high: float, generator: torch.Generator) -> float:
    """One draw from U(low, high) with ``generator`` (a Python float)."""
    return torch.empty(1).uniform_(low, high, generator=generator).item()


BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def fit_mixed(
    model: torch.nn.Module,
    train_data: Dataset,
    steps: int,
    batch_transform: BatchTransform | None,
    num_classes: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    device: torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    description: str = "training",
) -> list[float]:
    """Train a classifier for ``steps`` optimiser steps on batches that ``batch_transform`` may mix.

    ``batch_transform(images (B, C, H, W), labels (B,)) -> (images, targets (B, num_classes))`` returns
    soft targets (Mixup, CutMix); with ``None`` the targets are the one-hot labels. The loss is the
    cross-entropy against the soft targets, optimised with Adam at ``lr``. Batches are drawn from a
    seeded shuffle and the data is passed over as often as ``steps`` needs, so runs on training sets
    of different sizes get the same number of updates. Returns the loss of every step.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from cvcourse.runtime import device as default_device

    device = device or default_device()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(train_data, batch_size=min(batch_size, len(train_data)), shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    losses: list[float] = []
    bar = tqdm(total=steps, desc=description, disable=not progress, unit="step")
    while len(losses) < steps:
        for images, labels in loader:
            if batch_transform is None:
                targets = torch.nn.functional.one_hot(labels, num_classes).float()
            else:
                images, targets = batch_transform(images, labels)
            images, targets = images.to(device), targets.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(images), targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            if len(losses) == steps:
                break
    bar.close()
    model.eval()
    return losses
