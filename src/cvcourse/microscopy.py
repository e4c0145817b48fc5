"""Synthetic fluorescence microscopy, offline and seeded: 2D images of cells and 3D volumes of blobs, with masks.

``CellImages`` draws cells with a textured cytoplasm, a bright nucleus and a faint membrane, some of
them touching, then blurs the image (the optics) and adds noise (the camera). ``BlobVolumes`` does the
same in 3D with ellipsoids. Both are torch ``Dataset``s like :class:`cvcourse.data.ShapeScenes`:
item ``i`` is always the same for the same arguments.

Also here, for the segmentation notebooks: ``as_tensors`` (a dataset as stacked tensors) and
``overlay`` and ``show_segmentation`` (masks and errors drawn over images). Models train with
:func:`cvcourse.train.fit`, given a loss and a per-example metric such as a Dice coefficient.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from cvcourse.errors import CvcourseError
from cvcourse.viz import to_display

__all__ = ["CellImages", "BlobVolumes", "as_tensors", "overlay", "show_segmentation", "ERROR_COLOURS"]


def _check_counts(low: int, high: int) -> None:
    if not 0 <= low <= high:
        raise CvcourseError(f"need 0 <= min <= max objects, got {low} and {high}")


class CellImages(Dataset):
    """2D fluorescence-like images of cells with nuclei, some touching, blurred and noisy.

    Each cell is an ellipse with a wobbly outline (a few random harmonics of its radius), a textured
    cytoplasm, a brighter nucleus off its centre and a slightly darker membrane. With probability
    ``touching`` a new cell is placed against an earlier one, so that the two share a border; a pixel
    claimed by two cells belongs to the one whose centre is nearer (relative to its size). Up to
    ``debris`` small bright specks (not cells, not in any mask), an uneven illumination, a Gaussian blur
    of ``blur`` pixels and Gaussian noise of ``noise`` finish it.

    Returns ``(image, target)``:
        image: (1, H, W) float in [0, 1].
        target: ``mask`` (H, W) long, 1 on cells and 0 on background (the semantic mask);
        ``instances`` (H, W) long, 0 on background and k = 1..K on cell k; ``nuclei`` (H, W) bool.
    """

    def __init__(self, n: int, image_size: int = 64, min_cells: int = 3, max_cells: int = 8,
                 touching: float = 0.5, debris: int = 4, blur: float = 1.0, noise: float = 0.1, seed: int = 0):
        _check_counts(min_cells, max_cells)
        self.n, self.image_size, self.min_cells, self.max_cells = n, image_size, min_cells, max_cells
        self.touching, self.debris, self.blur, self.noise, self.seed = touching, debris, blur, noise, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index, 2])
        side = self.image_size
        rows, cols = np.mgrid[0:side, 0:side].astype(np.float64)
        # best[p] = the smallest normalised distance of pixel p to a cell centre (< 1 inside that cell).
        best = np.full((side, side), np.inf)
        owner = np.zeros((side, side), dtype=np.int64)
        image = np.zeros((side, side))
        nuclei = np.zeros((side, side), dtype=bool)
        centres: list[tuple[float, float, float]] = []
        for k in range(1, int(rng.integers(self.min_cells, self.max_cells + 1)) + 1):
            radius = rng.uniform(0.07, 0.13) * side
            if centres and rng.random() < self.touching:       # against an earlier cell
                cy0, cx0, r0 = centres[int(rng.integers(len(centres)))]
                angle = rng.uniform(0, 2 * np.pi)
                gap = (r0 + radius) * rng.uniform(0.8, 0.95)
                cy, cx = cy0 + gap * np.sin(angle), cx0 + gap * np.cos(angle)
            else:
                cy, cx = rng.uniform(radius, side - radius, size=2)
            centres.append((cy, cx, radius))
            theta = rng.uniform(0, np.pi)
            elongation = rng.uniform(1.0, 1.5)
            wobbles = [(h, rng.uniform(0, 0.06), rng.uniform(0, 2 * np.pi)) for h in (2, 3, 5)]
            brightness = rng.uniform(0.2, 0.6)
            ny, nx = rng.uniform(-0.25, 0.25, size=2) * radius
            nucleus_radius = radius * rng.uniform(0.35, 0.5)
            # Work in the cell's bounding window only: everything outside it is background for this cell.
            reach = radius * np.sqrt(elongation) * 1.2 + 1
            top, bottom = max(int(cy - reach), 0), min(int(cy + reach) + 2, side)
            left, right = max(int(cx - reach), 0), min(int(cx + reach) + 2, side)
            if top >= bottom or left >= right:
                continue
            window = (slice(top, bottom), slice(left, right))
            dy, dx = rows[window] - cy, cols[window] - cx
            u = (dx * np.cos(theta) + dy * np.sin(theta)) / np.sqrt(elongation)
            v = (-dx * np.sin(theta) + dy * np.cos(theta)) * np.sqrt(elongation)
            phi = np.arctan2(v, u)
            wobble = 1.0 + sum(a * np.cos(h * phi + p) for h, a, p in wobbles)
            distance = np.hypot(u, v) / (radius * wobble)      # < 1 inside the outline
            claim = (distance < 1.0) & (distance < best[window])
            best[window][claim], owner[window][claim] = distance[claim], k
            image[window][claim] = brightness * (1.0 - 0.3 * distance[claim] ** 4)   # a darker membrane at the rim
            nucleus = claim & (np.hypot(dy - ny, dx - nx) < nucleus_radius)
            image[window][nucleus] = brightness + rng.uniform(0.25, 0.4)
            nuclei[window] = (nuclei[window] & ~claim) | nucleus
        cells = owner > 0
        texture = ndimage.gaussian_filter(rng.standard_normal((side, side)), 1.5)
        image = image * (1.0 + 0.8 * texture * cells)
        for _ in range(int(rng.integers(0, self.debris + 1))):   # small bright specks that are not cells
            y, x = rng.uniform(0, side, size=2)
            speck = np.hypot(rows - y, cols - x) < rng.uniform(0.8, 1.8)
            image[speck] = rng.uniform(0.5, 0.9)
        slope = rng.uniform(-0.15, 0.15, size=2)
        image += rng.uniform(0.05, 0.2) + slope[0] * (rows / side - 0.5) + slope[1] * (cols / side - 0.5)
        if self.blur > 0:
            image = ndimage.gaussian_filter(image, self.blur)
        image += self.noise * rng.standard_normal((side, side))
        target = {
            "mask": torch.tensor(cells.astype(np.int64)),
            "instances": torch.tensor(owner),
            "nuclei": torch.tensor(nuclei),
        }
        return torch.tensor(np.clip(image, 0.0, 1.0)[None], dtype=torch.float32), target


class BlobVolumes(Dataset):
    """3D volumes of bright ellipsoidal blobs (nuclei in a tissue stack), blurred and noisy.

    Each blob is an ellipsoid with random semi-axes (``radius``: their range, as fractions of ``size``)
    and a random rotation; later blobs are painted over earlier ones. Blur and noise as in :class:`CellImages`.

    Returns ``(volume, target)``:
        volume: (1, D, H, W) float in [0, 1] with D = H = W = ``size``.
        target: ``mask`` (D, H, W) long, 1 inside a blob; ``instances`` (D, H, W) long, 0 or k = 1..K.
    """

    def __init__(self, n: int, size: int = 32, min_blobs: int = 2, max_blobs: int = 5,
                 radius: tuple[float, float] = (0.08, 0.2), blur: float = 1.0, noise: float = 0.1, seed: int = 0):
        _check_counts(min_blobs, max_blobs)
        self.radius = radius
        self.n, self.size, self.min_blobs, self.max_blobs = n, size, min_blobs, max_blobs
        self.blur, self.noise, self.seed = blur, noise, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index, 3])
        side = self.size
        grid = np.stack(np.mgrid[0:side, 0:side, 0:side].astype(np.float64), axis=-1)   # (D, H, W, 3) zyx
        owner = np.zeros((side, side, side), dtype=np.int64)
        volume = np.zeros((side, side, side))
        for k in range(1, int(rng.integers(self.min_blobs, self.max_blobs + 1)) + 1):
            axes = rng.uniform(*self.radius, size=3) * side
            centre = rng.uniform(axes.max(), side - axes.max(), size=3)
            rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
            local = (grid - centre) @ rotation                # coordinates along the ellipsoid's axes
            inside = ((local / axes) ** 2).sum(-1) < 1.0
            owner[inside] = k
            volume[inside] = rng.uniform(0.5, 0.9)
        volume += 0.1
        if self.blur > 0:
            volume = ndimage.gaussian_filter(volume, self.blur)
        volume += self.noise * rng.standard_normal(volume.shape)
        target = {"mask": torch.tensor((owner > 0).astype(np.int64)), "instances": torch.tensor(owner)}
        return torch.tensor(np.clip(volume, 0.0, 1.0)[None], dtype=torch.float32), target


def as_tensors(dataset: Dataset, key: str = "mask") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a segmentation dataset: images (N, C, ...) float and ``target[key]`` (N, ...)."""
    if len(dataset) == 0:
        raise CvcourseError("as_tensors needs a dataset with at least one item")
    images, targets = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.stack([t[key] for t in targets])


# Colours of the error overlay: true positives, false positives, false negatives (RGB in [0, 1]).
ERROR_COLOURS = {"true positive": (0.1, 0.8, 0.2), "false positive": (1.0, 0.1, 0.6), "false negative": (0.1, 0.6, 1.0)}


def overlay(image: torch.Tensor, mask: torch.Tensor, prediction: torch.Tensor | None = None,
            alpha: float = 0.45) -> np.ndarray:
    """An (H, W, 3) picture of a grey image with a mask, or with a prediction's errors, blended over it.

    Args:
        image: (1, H, W) or (H, W).
        mask: (H, W), non-zero on the object (the truth).
        prediction: None to tint ``mask`` green; else (H, W), non-zero where predicted: true positives
            green, false positives magenta, false negatives blue (``ERROR_COLOURS``).
    """
    grey = to_display(torch.as_tensor(image).reshape(torch.as_tensor(mask).shape))
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    truth = torch.as_tensor(mask).bool().cpu().numpy()
    if prediction is None:
        regions = {"true positive": truth}
    else:
        guess = torch.as_tensor(prediction).bool().cpu().numpy()
        regions = {"true positive": truth & guess, "false positive": ~truth & guess, "false negative": truth & ~guess}
    for name, region in regions.items():
        rgb[region] = (1 - alpha) * rgb[region] + alpha * np.array(ERROR_COLOURS[name])
    return rgb


def show_segmentation(images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor | None = None,
                      n: int = 6, size: float = 2.0, titles: Sequence[str] | None = None, suptitle: str | None = None):
    """Columns of examples; rows: the image, the true mask over it, and (if given) the prediction's errors.

    Args:
        images: (N, 1, H, W); masks and predictions: (N, H, W). Returns the figure.
    """
    n = min(n, len(images))
    nrows = 2 if predictions is None else 3
    fig, axes = plt.subplots(nrows, n, figsize=(size * n, size * nrows + 0.4), squeeze=False, layout="constrained")
    for i in range(n):
        axes[0, i].imshow(to_display(images[i]), cmap="gray", interpolation="nearest")
        axes[1, i].imshow(overlay(images[i], masks[i]), interpolation="nearest")
        if predictions is not None:
            axes[2, i].imshow(overlay(images[i], masks[i], predictions[i]), interpolation="nearest")
        if titles is not None:
            axes[0, i].set_title(str(titles[i]), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    labels = ["image", "true mask", "prediction"][:nrows]
    for ax, label in zip(axes[:, 0], labels):
        ax.set_ylabel(label)
    if predictions is not None:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ERROR_COLOURS.values()]
        fig.legend(handles, list(ERROR_COLOURS), loc="lower center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, -0.06))
    if suptitle:
        fig.suptitle(suptitle)
    return fig
