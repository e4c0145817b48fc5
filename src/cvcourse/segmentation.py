"""Semantic segmentation infrastructure: (image, class map) data, predicted class maps and plots.
Graded components (upsampling kernels, heads, metrics, losses) never live here; models train with
:func:`cvcourse.train.fit`, whose cross-entropy and accuracy fit class maps as they fit labels.

Conventions: an image batch is (N, 3, H, W) float, a class map (N, H, W) long with 0 = background,
a model maps (N, 3, H, W) to scores (N, C, H, W).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from cvcourse.data import SHAPES, ShapeScenes
from cvcourse.train import predict
from cvcourse.viz import to_display

#: Names of the classes of a ShapeScenes class map: 0 is the background, label + 1 a shape.
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(SHAPES)

#: One RGB colour in [0, 1] per class (background black); repeats after ten classes.
CLASS_COLOURS = np.array(
    [(0.0, 0.0, 0.0)] + [plt.get_cmap("tab10")(i)[:3] for i in (1, 2, 0, 4, 3, 5, 6, 8, 9)], dtype=np.float32
)


def shape_segmentation(n: int, image_size: int = 64, seed: int = 0, progress: bool = False, **scene_kwargs) -> TensorDataset:
    """``n`` seeded shape scenes as a dataset of (image, class map) pairs, generated once into memory.

    Args:
        n, image_size, seed: as for :class:`cvcourse.data.ShapeScenes`; further keyword arguments
            (``min_objects``, ``max_objects``, ``occluders``, ``noise``, ...) go to it as well.
        progress: show a tqdm bar while the scenes are drawn.
    Returns:
        a TensorDataset of images (n, 3, S, S) float in [0, 1] and class maps (n, S, S) long in
        0..len(classes), with 0 the background and label + 1 a shape.
    """
    scenes = ShapeScenes(n, image_size=image_size, seed=seed, **scene_kwargs)
    images = torch.empty(n, 3, image_size, image_size)
    maps = torch.empty(n, image_size, image_size, dtype=torch.long)
    for i in tqdm(range(n), desc="drawing scenes", disable=not progress, unit="scene"):
        image, target = scenes[i]
        images[i], maps[i] = image, target["semantic"]
    return TensorDataset(images, maps)


def class_pixel_counts(data: Dataset, num_classes: int) -> torch.Tensor:
    """Pixels of each class over every class map of ``data`` of (image, class map) pairs: (num_classes,) long."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    for _, target in DataLoader(data, batch_size=256):
        counts += torch.bincount(target.flatten(), minlength=num_classes)[:num_classes]
    return counts


def predict_masks(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 128, device=None) -> torch.Tensor:
    """Predicted class maps (N, H, W) long: the arg-max over classes of the model's scores, on the CPU."""
    return predict(model, data, batch_size, device, postprocess=lambda scores: scores.argmax(1))


def colourize(class_map: torch.Tensor | np.ndarray) -> np.ndarray:
    """An (H, W) class map as an (H, W, 3) RGB array, one :data:`CLASS_COLOURS` colour per class."""
    labels = np.asarray(torch.as_tensor(class_map).cpu(), dtype=np.int64)
    return CLASS_COLOURS[labels % len(CLASS_COLOURS)]


def overlay(image: torch.Tensor, class_map: torch.Tensor, alpha: float = 0.8) -> np.ndarray:
    """Blend the colours of a class map over a (3, H, W) image, leaving background pixels as they are."""
    rgb = to_display(image)
    rgb = np.repeat(rgb[..., None], 3, -1) if rgb.ndim == 2 else rgb.copy()
    labels = np.asarray(torch.as_tensor(class_map).cpu())
    foreground = labels > 0
    rgb[foreground] = (1 - alpha) * rgb[foreground] + alpha * colourize(labels)[foreground]
    return rgb


def show_segmentation(
    images: torch.Tensor,
    truths: torch.Tensor,
    predictions: dict[str, torch.Tensor] | torch.Tensor | None = None,
    names: tuple[str, ...] = CLASS_NAMES,
    size: float = 2.0,
    title: str | None = None,
):
    """One column per image: the image, its true class map over it, then each prediction over it.

    Args:
        images: (n, 3, H, W); truths: (n, H, W) class maps.
        predictions: a class map batch (n, H, W), or a dict name -> such a batch (one row each);
            a wrong pixel is marked white in the rows of predictions.
    Returns:
        the figure, with a legend of the class colours.
    """
    if predictions is None:
        predictions = {}
    elif isinstance(predictions, torch.Tensor):
        predictions = {"prediction": predictions}
    rows = [("image", None), ("truth", truths)] + list(predictions.items())
    n = len(images)
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n, size * len(rows) + 0.6), squeeze=False)
    for r, (label, maps) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if maps is None:
                ax.imshow(to_display(images[i]), cmap="gray", interpolation="nearest")  # cmap: grey images only
            else:
                picture = overlay(images[i], maps[i])
                if r > 1:
                    wrong = np.asarray(maps[i] != truths[i])
                    picture[wrong] = 0.6 * picture[wrong] + 0.4
                ax.imshow(picture, interpolation="nearest")
            if i == 0:
                ax.set_ylabel(label)
    handles = [Patch(color=CLASS_COLOURS[c % len(CLASS_COLOURS)], label=name) for c, name in enumerate(names) if c > 0]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
