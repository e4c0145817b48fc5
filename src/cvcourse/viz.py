"""Plots a reader would rather look at than read: image grids, feature maps, boxes, masks, heatmaps, curves.

Every function draws with matplotlib and returns the figure (or the axes it drew on), so a notebook
cell ending in a call shows the plot once.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

plt.rcParams.update({
    "figure.dpi": 100,
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
})

PALETTE = plt.get_cmap("tab10").colors


def to_display(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An (H, W) or (C, H, W) image as an (H, W) or (H, W, 3) array in [0, 1], min-max scaled if outside."""
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, float)
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array[:3], 0, -1)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        array = (array - low) / (high - low + 1e-12)
    return array


def _grid(n: int, ncols: int, size: float):
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def show_images(
    images: Sequence | torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.6,
    cmap: str = "gray",
    suptitle: str | None = None,
):
    """A grid of images, each (H, W) or (C, H, W); optional per-image titles. Returns the figure."""
    fig, axes = _grid(len(images), ncols, size)
    for i, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(to_display(image), cmap=cmap, interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_feature_maps(maps: torch.Tensor, n: int = 16, ncols: int = 8, title: str | None = None, cmap: str = "viridis"):
    """The first ``n`` channels of one (C, H, W) activation, each scaled to its own range."""
    maps = maps.detach()[:n]
    fig, axes = _grid(len(maps), ncols, 1.4)
    for c, (ax, fmap) in enumerate(zip(axes, maps)):
        ax.imshow(fmap.float().cpu().numpy(), cmap=cmap, interpolation="nearest")
        ax.set_title(f"ch {c}", fontsize=8)
    if title:
        fig.suptitle(f"{title}  ({tuple(maps.shape[-2:])[0]}x{tuple(maps.shape[-2:])[1]})")
    fig.tight_layout()
    return fig


def draw_boxes(ax, boxes, labels=None, names: Sequence[str] | None = None, scores=None, color=None):
    """Draw xyxy ``boxes`` (N, 4) on ``ax`` with optional class labels and scores."""
    boxes = torch.as_tensor(boxes).detach().cpu().reshape(-1, 4)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        label = None if labels is None else int(labels[i])
        edge = color or (PALETTE[label % len(PALETTE)] if label is not None else PALETTE[0])
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=edge, linewidth=1.8))
        text = [] if label is None else [names[label] if names else str(label)]
        if scores is not None:
            text.append(f"{float(scores[i]):.2f}")
        if text:
            ax.text(x0, y0, " ".join(text), color="white", fontsize=8, va="bottom",
                    bbox={"facecolor": edge, "alpha": 0.8, "pad": 1, "linewidth": 0})
    return ax


def overlay_masks(image: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blend boolean ``masks`` (N, H, W) over an image, one colour per instance; returns (H, W, 3)."""
    rgb = to_display(image)
    rgb = np.repeat(rgb[..., None], 3, -1) if rgb.ndim == 2 else rgb.copy()
    for i, mask in enumerate(torch.as_tensor(masks).bool().cpu().numpy()):
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.array(PALETTE[i % len(PALETTE)])
    return rgb


def show_heatmap(image: torch.Tensor, heat: torch.Tensor, ax=None, alpha: float = 0.5, title: str | None = None):
    """An (H, W) heatmap, resized to the image if needed, laid over the image."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    base = to_display(image)
    heat = torch.as_tensor(heat).detach().float().cpu()
    if heat.shape[-2:] != base.shape[:2]:
        heat = torch.nn.functional.interpolate(heat[None, None], size=base.shape[:2], mode="bilinear")[0, 0]
    ax.imshow(base, cmap="gray")
    ax.imshow(heat.numpy(), cmap="jet", alpha=alpha)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    xlabel: str = "epoch",
    ylabel: str = "",
    title: str | None = None,
    ax=None,
    x: Sequence[float] | None = None,
    logy: bool = False,
):
    """One line per named series, markers on each point, a legend; x defaults to 1, 2, ..."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, (name, values) in enumerate(curves.items()):
        xs = list(x) if x is not None else list(range(1, len(values) + 1))
        ax.plot(xs, list(values), marker="o", markersize=3, label=name, color=PALETTE[i % len(PALETTE)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax
