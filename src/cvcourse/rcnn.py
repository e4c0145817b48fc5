"""Torchvision's two-stage detectors (Faster R-CNN, Mask R-CNN) at course size, trainable on a CPU.

Infrastructure, never answers: a builder for a small Faster or Mask R-CNN, the conversion of
:class:`cvcourse.data.ShapeScenes` targets to torchvision's format, a training loop over the dict of
losses these models return (with gradient clipping: Mask R-CNN trained from scratch diverges to NaN
without it) and prediction with thresholded masks.

Torchvision's conventions: images are a list of (3, H, W) float tensors in [0, 1]; a target is a dict
with ``boxes`` (N, 4) float xyxy in pixels, ``labels`` (N,) long in 1..num_classes-1 (0 is the
background) and, for Mask R-CNN, ``masks`` (N, H, W) uint8.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cvcourse.errors import CvcourseError
from cvcourse.runtime import device as default_device

KINDS = ("faster", "mask")
BACKBONES = ("small", "mobilenet_v3")


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers, the first with stride 2: (N, c_in, H, W) -> (N, c_out, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class SmallFPNBackbone(nn.Module):
    """Three strided stages (strides 2, 4, 8) and a feature pyramid network on top.

    Shapes:
        forward(x): (N, 3, H, W) -> OrderedDict "0", "1", "2" of (N, out_channels, H/s, W/s), s = 2, 4, 8.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

        self.stages = nn.ModuleList([_stage(3, width), _stage(width, 2 * width), _stage(2 * width, 4 * width)])
        self.fpn = FeaturePyramidNetwork([width, 2 * width, 4 * width], 4 * width)
        self.out_channels = 4 * width

    def forward(self, x: torch.Tensor) -> OrderedDict:
        features = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[str(i)] = x
        return self.fpn(features)


def build_rcnn(
    num_classes: int,
    kind: str = "mask",
    backbone: str = "small",
    width: int = 16,
    image_size: int = 64,
    detections_per_image: int = 20,
    **kwargs,
) -> nn.Module:
    """A torchvision Faster or Mask R-CNN sized for small images and a CPU.

    Args:
        num_classes: classes including the background (3 shapes -> 4).
        kind: "faster" (boxes) or "mask" (boxes and masks).
        backbone: "small" (:class:`SmallFPNBackbone`, fast) or "mobilenet_v3" (torchvision's
            MobileNetV3-Large with an FPN, no pretrained weights: nothing is downloaded).
        width: channels of the small backbone's first stage; its FPN has 4 * width channels.
        image_size: images are resized so that their sides are image_size (min_size = max_size).
        detections_per_image: at most this many detections per image after NMS.
        kwargs: passed on to torchvision's FasterRCNN / MaskRCNN (they override the sizes chosen here).
    Returns:
        the model; ``model(images, targets)`` in train mode returns a dict of losses, ``model(images)``
        in eval mode a list of dicts with boxes, labels, scores (and masks (N, 1, H, W) in [0, 1]).
    """
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    if kind not in KINDS:
        raise CvcourseError(f"kind must be one of {KINDS}, got {kind!r}")
    if backbone not in BACKBONES:
        raise CvcourseError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if num_classes < 2:
        raise CvcourseError(f"num_classes counts the background too, so it must be at least 2, got {num_classes}")
    if backbone == "small":
        body = SmallFPNBackbone(width)
        names = ["0", "1", "2"]
        # one anchor size per level, scaled to the image: objects of 1/16 to 1/2 of the side
        sizes = tuple((max(4, round(image_size * f)),) for f in (1 / 8, 1 / 4, 1 / 2))
        ratios = ((0.5, 1.0, 2.0),) * len(names)
    else:
        body = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6)
        names = ["0", "1"]
        sizes = (tuple(max(4, round(image_size * f)) for f in (1 / 8, 1 / 4, 1 / 2)),) * 3
        ratios = ((0.5, 1.0, 2.0),) * 3
    channels = body.out_channels
    options = dict(
        min_size=image_size, max_size=image_size,
        rpn_anchor_generator=AnchorGenerator(sizes, ratios),
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150,
        rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64, box_batch_size_per_image=64,
        box_detections_per_img=detections_per_image,
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
        box_head=TwoMLPHead(channels * 49, 256), box_predictor=FastRCNNPredictor(256, num_classes),
    )
    if kind == "mask":
        options.update(
            mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
            mask_head=MaskRCNNHeads(channels, [channels, channels], 1),
            mask_predictor=MaskRCNNPredictor(channels, channels, num_classes),
        )
    options.update(kwargs)
    model_class = MaskRCNN if kind == "mask" else FasterRCNN
    return model_class(body, num_classes=None, **options)


def to_targets(target: dict, masks: bool = True) -> dict:
    """A ShapeScenes target -> torchvision's: labels shifted by one (0 is the background), uint8 masks."""
    out = {"boxes": target["boxes"].float().reshape(-1, 4), "labels": target["labels"].long() + 1}
    if masks:
        out["masks"] = target["masks"].to(torch.uint8)
    return out


def collate(batch):
    """(image, target) pairs -> (list of images, list of targets), the format torchvision's detectors take."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class _Converted(Dataset):
    def __init__(self, data: Dataset, masks: bool):
        self.data, self.masks = data, masks

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image, target = self.data[index]
        return image, to_targets(target, self.masks)


def train_rcnn(
    model: nn.Module,
    data: Dataset,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    batch_size: int = 8,
    clip: float | None = 5.0,
    device: torch.device | None = None,
    seed: int = 0,
    convert: bool = True,
    progress: bool = True,
    description: str = "training",
) -> dict[str, list[float]]:
    """Train a torchvision detector on (image, target) pairs; return the mean of each loss per epoch.

    Args:
        data: a Dataset of (image (3, H, W), target dict); ShapeScenes targets are converted with
            :func:`to_targets` unless ``convert=False`` (then they must already be torchvision's).
        optimizer: defaults to SGD, lr 0.01, momentum 0.9, weight decay 1e-4.
        clip: the largest allowed gradient norm (``clip_grad_norm_``); None disables clipping.
    Returns:
        dict loss name -> per-epoch means, with "loss" for their sum.
    Raises:
        CvcourseError: if the loss becomes NaN or infinite (lower the learning rate or clip harder).
    """
    device = device or default_device()
    model.to(device)
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    masks = hasattr(getattr(model, "roi_heads", None), "mask_head") and model.roi_heads.mask_head is not None
    dataset = _Converted(data, masks) if convert else data
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate)
    history: dict[str, list[float]] = {}
    bar = tqdm(range(epochs), desc=description, unit="epoch", disable=not progress)
    for _ in bar:
        model.train()
        sums: dict[str, float] = {}
        count = 0
        for images, targets in loader:
            images = [image.to(device) for image in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            losses = model(images, targets)
            loss = sum(losses.values())
            if not math.isfinite(loss.item()):
                raise CvcourseError(f"the loss became {loss.item()}: lower the learning rate or clip harder")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item() * len(images)
            sums["loss"] = sums.get("loss", 0.0) + loss.item() * len(images)
            count += len(images)
        for name, total in sums.items():
            history.setdefault(name, []).append(total / count)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    return history


@torch.no_grad()
def predict_rcnn(
    model: nn.Module,
    images,
    batch_size: int = 16,
    device: torch.device | None = None,
    score_threshold: float = 0.0,
    mask_threshold: float = 0.5,
) -> list[dict]:
    """Detections for a list (or Dataset of (image, target)) of images, on the CPU.

    Returns:
        one dict per image: ``boxes`` (K, 4), ``labels`` (K,) in 1..num_classes-1, ``scores`` (K,)
        sorted from high to low, and for Mask R-CNN ``masks`` (K, H, W) bool (probability > mask_threshold).
    """
    device = device or default_device()
    model.to(device).eval()
    if isinstance(images, Dataset):
        images = [images[i][0] for i in range(len(images))]
    out = []
    for start in range(0, len(images), batch_size):
        batch = [image.to(device) for image in images[start:start + batch_size]]
        for result in model(batch):
            keep = result["scores"] >= score_threshold
            item = {k: v[keep].cpu() for k, v in result.items()}
            if "masks" in item:
                item["masks"] = item["masks"][:, 0] > mask_threshold
            out.append(item)
    return out
