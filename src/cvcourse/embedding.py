"""Working with image embeddings: batched feature extraction, a linear probe and 2-D embedding maps.

Infrastructure shared by the notebooks on embeddings and self-supervised learning; the graded parts
(the embedder itself, k-NN, PCA, contrastive losses, ...) are written by the learner, never here.
"""

from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cvcourse.viz import PALETTE, to_display


def _inputs(data: Dataset | torch.Tensor, batch_size: int):
    """Batches of inputs: slices of a tensor, or the first element of each batch of a Dataset."""
    if isinstance(data, torch.Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size]
        return
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        yield batch[0] if isinstance(batch, (list, tuple)) else batch


def features(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset | torch.Tensor,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
    description: str = "features",
) -> torch.Tensor:
    """``fn`` applied to every input of ``data``, batch by batch, without gradients.

    Args:
        fn: maps a batch (B, ...) to features (B, ...), e.g. ``model.embed`` (call ``model.eval()`` first:
            this function does not change any module's mode).
        data: a tensor (N, ...) of inputs, or a Dataset whose items are (input, ...) tuples.
        device: where ``fn`` runs (inputs are moved there); the result always comes back to the CPU.
        progress: show a tqdm bar over batches.
    Returns:
        (N, ...) float tensor on the CPU, in the order of ``data``.
    """
    n = len(data)
    outputs = []
    with torch.no_grad():
        batches = _inputs(data, batch_size)
        total = (n + batch_size - 1) // batch_size
        for x in tqdm(batches, total=total, desc=description, disable=not progress, leave=False):
            if device is not None:
                x = x.to(device)
            outputs.append(fn(x).float().cpu())
    if not outputs:
        raise ValueError("features() needs at least one input")
    return torch.cat(outputs)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    C: float = 1.0,
    max_iter: int = 2000,
) -> tuple[float, object]:
    """Accuracy of a linear classifier trained on frozen features: the standard test of a representation.

    The features are standardised (mean 0, variance 1 per dimension, statistics of the training set) and a
    multinomial L2-regularised logistic regression (scikit-learn, strength ``1 / C``) is fitted on them.

    Args:
        train_features: (N, D) float; train_labels: (N,) int.
        test_features: (M, D) float; test_labels: (M,) int.
    Returns:
        (test accuracy as a float in [0, 1], the fitted scikit-learn pipeline).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(np.asarray(train_features, dtype=np.float64), np.asarray(train_labels))
    accuracy = float((probe.predict(np.asarray(test_features, dtype=np.float64)) == np.asarray(test_labels)).mean())
    return accuracy, probe


def scatter_embedding(
    points: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    images: torch.Tensor | None = None,
    n_thumbnails: int = 40,
    ax=None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    zoom: float = 0.6,
    seed: int = 0,
    legend: bool = True,
):
    """A 2-D map of an embedding: one dot per example coloured by class, and a few image thumbnails.

    Args:
        points: (N, 2) coordinates (a PCA or t-SNE projection).
        labels: (N,) integer classes, used for the colours.
        images: optional (N, C, H, W) images; ``n_thumbnails`` of them, chosen at random (seeded) but
            never closer than 4% of the plot's width to one already drawn, are pasted at their points.
        class_names: legend names; defaults to the class numbers.
    Returns:
        The matplotlib axes.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) and labels (N,); got {points.shape} and {labels.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.5))
    for c in np.unique(labels):
        chosen = labels == c
        name = class_names[int(c)] if class_names is not None else str(int(c))
        ax.scatter(points[chosen, 0], points[chosen, 1], s=7, alpha=0.7, color=PALETTE[int(c) % len(PALETTE)],
                   label=name, linewidths=0)
    if images is not None and n_thumbnails > 0:
        span = np.ptp(points, axis=0).max() + 1e-12
        placed: list[np.ndarray] = []
        for i in np.random.default_rng(seed).permutation(len(points)):
            if len(placed) >= n_thumbnails:
                break
            if placed and np.min(np.linalg.norm(np.array(placed) - points[i], axis=1)) < 0.04 * span:
                continue
            placed.append(points[i])
            thumb = OffsetImage(to_display(images[i]), zoom=zoom, cmap="gray_r" if images[i].shape[0] == 1 else None)
            frame = dict(edgecolor=PALETTE[int(labels[i]) % len(PALETTE)], linewidth=1.2, boxstyle="square,pad=0.05")
            ax.add_artist(AnnotationBbox(thumb, points[i], frameon=True, bboxprops=frame, pad=0.0))
    if legend:
        ax.legend(markerscale=2.5, fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  title="class")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax

