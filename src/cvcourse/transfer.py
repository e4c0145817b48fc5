"""Infrastructure for the transfer-learning notebooks: a natural-texture target task, ImageNet input
normalisation, and a disk cache of the features of a frozen MobileNetV2.

The target task, :func:`texture_patches`, asks which of ten scikit-image photos (bricks, grass, gravel, a
cameraman, the moon, coins, cells, an astronaut, coffee, a cat) a small grey patch was cut from. Every photo
is cut into horizontal bands one patch high; bands ``0, 1`` of every three give training patches and band
``2`` test patches, so a test patch never overlaps a training patch but both cover the whole photo.

The graded parts of the notebooks (freezing, replacing a head, parameter groups, ...) are not here.
"""

from __future__ import annotations

import hashlib
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from cvcourse.data import photo
from cvcourse.errors import CvcourseError, unknown_choice
from cvcourse.pretrained import IMAGENET_MEAN, IMAGENET_STD
from cvcourse.runtime import cache_dir

TEXTURES: tuple[str, ...] = (
    "brick", "grass", "gravel", "camera", "moon", "coins", "cell", "astronaut", "coffee", "chelsea",
)
"""The scikit-image photos that are the classes of :func:`texture_patches`, in label order."""

SPLITS = ("train", "test")
TEST_BAND = 2  # band b of a photo is a test band when b % 3 == TEST_BAND


def grey(image: torch.Tensor) -> torch.Tensor:
    """A (1, H, W) grey version of a (1, H, W) or (3, H, W) image (ITU-R 601 luma weights)."""
    if image.shape[0] == 1:
        return image
    if image.shape[0] != 3:
        raise CvcourseError(f"expected 1 or 3 channels, got {image.shape[0]}")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(dim=0, keepdim=True)


def bands(height: int, patch: int, split: str) -> list[int]:
    """The top rows of the bands of a photo of ``height`` rows that belong to ``split``."""
    if split not in SPLITS:
        raise unknown_choice("split", split, SPLITS)
    return [b * patch for b in range(height // patch) if (b % 3 == TEST_BAND) == (split == "test")]


def texture_patches(
    split: str = "train",
    n_per_class: int = 20,
    image_size: int = 64,
    patch: int = 48,
    classes: Sequence[str] = TEXTURES,
    seed: int = 0,
) -> TensorDataset:
    """Grey patches cut from scikit-image photos; the label is the photo a patch came from.

    Args:
        split: ``train`` or ``test``; their bands of rows are disjoint (see the module docstring).
        n_per_class: patches per photo.
        image_size: side S of the returned patches (each ``patch`` x ``patch`` crop is resized to it).
        patch: side of a crop in the photo's own pixels.
        classes: photo names from :data:`cvcourse.data.PHOTOS`; class c is ``classes[c]``.
        seed: seeds the crop positions (train and test draw from different streams).
    Returns:
        TensorDataset of images (N, 3, S, S) float32 in [0, 1] (the grey value in all three channels,
        as an ImageNet backbone expects) and labels (N,) int64, N = ``n_per_class * len(classes)``,
        grouped by class.
    """
    if n_per_class < 1 or patch < 1 or image_size < 1:
        raise CvcourseError(f"n_per_class, patch and image_size must be positive, got {n_per_class}, {patch}, {image_size}")
    generator = torch.Generator().manual_seed(2 * seed + (split == "test"))
    crops, labels = [], []
    for label, name in enumerate(classes):
        image = grey(photo(name))
        height, width = image.shape[1:]
        tops = bands(height, patch, split)
        if not tops or width < patch:
            raise CvcourseError(f"photo {name!r} ({height}x{width}) is too small for {patch}-pixel patches")
        rows = torch.randint(len(tops), (n_per_class,), generator=generator)
        cols = torch.randint(width - patch + 1, (n_per_class,), generator=generator)
        for r, c in zip(rows.tolist(), cols.tolist()):
            crops.append(image[:, tops[r]:tops[r] + patch, c:c + patch])
            labels.append(label)
    images = torch.stack(crops)
    if image_size != patch:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True,
                               align_corners=False)
    images = images.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
    return TensorDataset(images, torch.tensor(labels, dtype=torch.long))


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1] -> (x - mean) / std with ImageNet's channel statistics."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def normalized(dataset: TensorDataset) -> TensorDataset:
    """The same (images, labels) dataset with its images passed through :func:`imagenet_normalize`."""
    images, *rest = dataset.tensors
    return TensorDataset(imagenet_normalize(images), *rest)


def pooled_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A MobileNetV2's penultimate features: ``model.features`` then global average pooling, (N, 1280)."""
    return F.adaptive_avg_pool2d(model.features(images), 1).flatten(1)


def _fingerprint(model: nn.Module, images: torch.Tensor) -> str:
    """A SHA-1 over the images and every parameter and buffer of the backbone's ``features``."""
    digest = hashlib.sha1()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    for name, tensor in model.features.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: TensorDataset,
    batch_size: int = 128,
    device: torch.device | None = None,
    cache: bool = True,
    progress: bool = True,
) -> TensorDataset:
    """Run a frozen MobileNetV2 backbone once over ``dataset`` and keep its pooled features.

    The backbone runs in eval mode (batch norm uses its ImageNet running statistics, dropout is off),
    exactly as a frozen backbone behaves inside the full model at test time. With ``cache`` the
    features are stored in the course cache under a hash of the images and the backbone's weights, so a
    second call (or a second run of the notebook) reads them back instead of recomputing.

    Args:
        model: a torchvision MobileNetV2 (anything with ``.features`` giving (N, C, h, w) maps).
        dataset: TensorDataset of normalised images (N, 3, H, W) and labels (N,).
    Returns:
        TensorDataset of features (N, C) float32 on the CPU and the same labels.
    """
    images, *rest = dataset.tensors
    path = cache_dir("transfer") / f"features-{_fingerprint(model, images)}.pt"
    if cache and path.exists():
        try:
            return TensorDataset(torch.load(path, weights_only=True), *rest)
        except Exception:  # a damaged cache file is recomputed
            pass
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    chunks = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="features", unit="batch", disable=not progress):
        chunks.append(pooled_features(model, images[start:start + batch_size].to(device)).float().cpu())
    model.train(was_training)
    features = torch.cat(chunks) if chunks else torch.zeros(0, 0)
    if cache:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(features, tmp)
        os.replace(tmp, path)  # atomic: parallel notebooks never read half a file
    return TensorDataset(features, *rest)
