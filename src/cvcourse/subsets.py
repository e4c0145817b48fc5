"""Seeded class-aware subsets of a labelled ``TensorDataset``: few labels per class, imbalanced and long-tailed.

The data-starved and imbalanced regimes that the augmentation, imbalance and noise notebooks study, built
from the same offline datasets as everything else (:mod:`cvcourse.data`). Every function keeps the
dataset's tensors and order of classes, and picks examples with a seeded permutation, so a profile and a
seed give the same subset every time.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from cvcourse.errors import CvcourseError, unknown_choice

PROFILES = ("exponential", "step")


def labels_of(dataset: TensorDataset) -> torch.Tensor:
    """The integer labels (N,) of a ``TensorDataset`` whose last tensor holds them."""
    if not isinstance(dataset, TensorDataset):
        raise CvcourseError(f"expected a TensorDataset of (images, labels), got {type(dataset).__name__}")
    return dataset.tensors[-1]


def class_counts(dataset: TensorDataset, n_classes: int | None = None) -> torch.Tensor:
    """How many examples each class has: (C,) int64, C = ``n_classes`` or the largest label + 1."""
    labels = labels_of(dataset)
    return torch.bincount(labels, minlength=n_classes or 0)


def take(dataset: TensorDataset, indices: torch.Tensor) -> TensorDataset:
    """The examples at ``indices`` (K,), as a new ``TensorDataset`` in that order."""
    return TensorDataset(*(t[indices] for t in dataset.tensors))


def _take_per_class(dataset: TensorDataset, counts: list[int], seed: int) -> TensorDataset:
    """``counts[c]`` examples of each class c, drawn by a seeded permutation and kept in dataset order."""
    labels = labels_of(dataset)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    chosen = []
    for c, wanted in enumerate(counts):
        of_class = order[labels[order] == c]
        if wanted > len(of_class):
            raise CvcourseError(f"class {c} has {len(of_class)} examples, {wanted} were asked for")
        chosen.append(of_class[:wanted])
    return take(dataset, torch.cat(chosen).sort().values)


def per_class(dataset: TensorDataset, k: int, seed: int = 0) -> TensorDataset:
    """Exactly ``k`` examples of every class: the few-labels regime (``k`` labels per class)."""
    if k < 1:
        raise CvcourseError(f"k must be at least 1, got {k}")
    n_classes = int(labels_of(dataset).max()) + 1
    return _take_per_class(dataset, [k] * n_classes, seed)


def imbalanced_counts(n_max: int, n_classes: int, ratio: float, profile: str = "exponential",
                      n_minority: int | None = None) -> list[int]:
    """Examples per class for an imbalance ``ratio`` = largest / smallest class.

    ``exponential`` (the long tail of Cui et al. 2019): class c keeps ``n_max * ratio ** (-c / (C - 1))``.
    ``step``: the last ``n_minority`` classes (default: half) keep ``n_max / ratio``, the rest ``n_max``.
    Every class keeps at least one example.
    """
    if profile not in PROFILES:
        raise unknown_choice("profile", profile, PROFILES)
    if ratio < 1 or n_classes < 2:
        raise CvcourseError(f"need ratio >= 1 and at least 2 classes, got ratio={ratio}, n_classes={n_classes}")
    if profile == "exponential":
        sizes = [n_max * ratio ** (-c / (n_classes - 1)) for c in range(n_classes)]
    else:
        n_minority = n_classes // 2 if n_minority is None else n_minority
        sizes = [n_max if c < n_classes - n_minority else n_max / ratio for c in range(n_classes)]
    return [max(1, int(round(s))) for s in sizes]


def imbalanced(dataset: TensorDataset, ratio: float, n_max: int | None = None, profile: str = "exponential",
               n_minority: int | None = None, seed: int = 0) -> TensorDataset:
    """A subset whose class sizes follow :func:`imbalanced_counts` (class 0 the largest).

    Args:
        ratio: largest class size over smallest.
        n_max: size of the largest class (default: the smallest class's size in ``dataset``, so every
            class can supply it).
        profile: ``exponential`` (long tail) or ``step`` (majority and minority groups).
        n_minority: minority classes of the ``step`` profile.
    """
    counts = class_counts(dataset)
    n_max = int(counts.min()) if n_max is None else n_max
    return _take_per_class(dataset, imbalanced_counts(n_max, len(counts), ratio, profile, n_minority), seed)
