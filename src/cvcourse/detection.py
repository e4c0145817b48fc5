"""Infrastructure for the object detection notebooks: data in memory, a training loop, mAP, pictures and
the grid detector of notebook 05.


Graded components (IoU, NMS, AP, anchors, soft-NMS, ...) never live here. Boxes are ``xyxy`` in pixels
throughout, as in :class:`cvcourse.data.ShapeScenes` and ``torchvision.ops``. A *prediction* and a
*target* are dicts with ``boxes`` (N, 4) float, ``labels`` (N,) long and, for a prediction, ``scores``
(N,) float: the format of torchvision's detection models and of torchmetrics.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cvcourse.models import conv_block
from cvcourse.runtime import device as default_device
from cvcourse.viz import draw_boxes, to_display

Target = dict[str, torch.Tensor]


def materialize(dataset: Dataset, progress: bool = True, description: str = "scenes") -> tuple[torch.Tensor, list[Target]]:
    """Render every (image, target) pair of a detection dataset once, with a progress bar.

    Returns:
        images: (N, 3, H, W) float; targets: N dicts holding only ``boxes`` (n_i, 4) and ``labels`` (n_i,).
    """
    images, targets = [], []
    for i in tqdm(range(len(dataset)), desc=description, disable=not progress, unit="img"):
        image, target = dataset[i]
        images.append(image)
        targets.append({"boxes": target["boxes"].float().reshape(-1, 4), "labels": target["labels"].long()})
    if not images:
        raise ValueError("the dataset is empty")
    return torch.stack(images), targets


def fit_detector(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    encoded: torch.Tensor,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    augment: Callable | None = None,
    device: torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    description: str = "training",
) -> list[float]:
    """Train a dense detector whose targets were encoded into one tensor per image; return epoch losses.

    Args:
        loss_fn: ``loss_fn(model(x), encoded_batch)`` -> scalar.
        images: (N, 3, H, W); encoded: (N, ...), row i the training target of image i.
        augment: optional ``augment(x, y, generator) -> (x, y)`` applied to each batch on the CPU.
    Uses AdamW with a one-cycle learning-rate schedule (warm-up then cosine decay), shuffles with a
    generator seeded by ``seed``, and shows a tqdm bar over epochs with the running loss.
    """
    device = device or default_device()
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, -(-len(images) // batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                   pct_start=0.2)
    losses = []
    bar = tqdm(range(epochs), desc=description, disable=not progress, unit="epoch")
    for _ in bar:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(images), batch_size):
            index = order[start:start + batch_size]
            x, y = images[index], encoded[index]
            if augment is not None:
                x, y = augment(x, y, generator)
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
            count += len(index)
        losses.append(total / count)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


@torch.no_grad()
def predict_dense(model: nn.Module, images: torch.Tensor, batch_size: int = 256, device: torch.device | None = None) -> torch.Tensor:
    """Run ``model`` in eval mode over (N, 3, H, W) images in batches; return its outputs on the CPU."""
    device = device or default_device()
    model.to(device).eval()
    return torch.cat([model(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)])


def offset_by_class(boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Shift boxes (N, 4) of different labels (N,) so far apart that boxes of two classes never overlap.

    Class-agnostic NMS on the shifted boxes is then class-aware NMS (the trick of ``batched_nms``).
    """
    if boxes.numel() == 0:
        return boxes.clone()
    span = boxes.max() - boxes.min() + 1
    return boxes + (labels.to(boxes) * span)[:, None]


def mean_average_precision(predictions: Sequence[Target], targets: Sequence[Target], class_metrics: bool = False) -> dict:
    """COCO-style mAP of detections with torchmetrics' ``MeanAveragePrecision`` (pycocotools backend).

    Returns a dict of floats: ``map`` (IoU 0.5:0.95), ``map_50``, ``map_75``, ``mar_100`` and, with
    ``class_metrics``, ``map_per_class`` (a list, -1 for a class never seen).
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type="bbox", box_format="xyxy", class_metrics=class_metrics)
    metric.update(
        [{k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")} for p in predictions],
        [{k: t[k].detach().cpu() for k in ("boxes", "labels")} for t in targets],
    )
    result = metric.compute()
    out = {k: float(result[k]) for k in ("map", "map_50", "map_75", "mar_100")}
    if class_metrics:
        out["map_per_class"] = [float(v) for v in torch.atleast_1d(result["map_per_class"])]
    return out


def draw_detections(ax, image: torch.Tensor, prediction: Target, target: Target | None = None,
                    names: Sequence[str] | None = None, score_threshold: float = 0.3, title: str | None = None):
    """Show an image with its true boxes (dashed white) and the predictions scoring >= ``score_threshold``."""
    ax.imshow(to_display(image))
    if target is not None:
        for x0, y0, x1, y1 in target["boxes"].tolist():
            ax.add_patch(_dashed(x0, y0, x1, y1))
    keep = prediction["scores"] >= score_threshold
    draw_boxes(ax, prediction["boxes"][keep], prediction["labels"][keep], names=names, scores=prediction["scores"][keep])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _dashed(x0, y0, x1, y1):
    import matplotlib.pyplot as plt

    return plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=1.2, linestyle="--")


# The single-stage grid detector that notebook 05 builds by hand, for the notebooks that use it after.
# An encoded target is (N, S, S, 6) per cell: objectness, x and y offsets of the box centre in the cell,
# width and height over the image side, class.

class GridDetector(nn.Module):
    """A YOLO-v1-style detector: (B, 3, H, W) -> (B, 5 + num_classes, H / 8, W / 8).

    Per cell: an objectness logit, x and y offset logits, width and height logits (their sigmoids are
    fractions of the image side), then one logit per class.
    """

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        self.backbone = nn.Sequential(conv_block(3, width), conv_block(width, 2 * width),
                                      conv_block(2 * width, 4 * width), conv_block(4 * width, 4 * width, pool=False))
        self.head = nn.Conv2d(4 * width, 5 + num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def encode_grid(boxes_per_image: Sequence[torch.Tensor], labels_per_image: Sequence[torch.Tensor],
                image_size: int, stride: int = 8) -> torch.Tensor:
    """Training targets (N, S, S, 6) of N images' xyxy boxes (n_i, 4) and labels (n_i,), S = image_size // stride.

    The cell holding a box centre is responsible for it; of two boxes in one cell, the later one wins.
    """
    grid = image_size // stride
    encoded = torch.zeros(len(boxes_per_image), grid, grid, 6)
    for n, (boxes, labels) in enumerate(zip(boxes_per_image, labels_per_image)):
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            j, i = min(int(cx // stride), grid - 1), min(int(cy // stride), grid - 1)
            encoded[n, i, j] = torch.tensor([1.0, cx / stride - j, cy / stride - i,
                                             (x1 - x0) / image_size, (y1 - y0) / image_size, label])
    return encoded


def grid_loss(output: torch.Tensor, encoded: torch.Tensor, box_weight: float = 5.0) -> torch.Tensor:
    """YOLO-v1 loss per image of outputs (B, 5 + C, S, S) against targets (B, S, S, 6).

    Objectness cross-entropy on every cell; on responsible cells only, squared errors of the centre
    offsets and of the square roots of the sizes (weighted by ``box_weight``) and class cross-entropy.
    """
    out = output.permute(0, 2, 3, 1)
    responsible = encoded[..., 0] > 0
    loss_obj = F.binary_cross_entropy_with_logits(out[..., 0], encoded[..., 0], reduction="sum")
    pred, true = out[responsible], encoded[responsible]
    loss_xy = ((pred[:, 1:3].sigmoid() - true[:, 1:3]) ** 2).sum()
    loss_wh = ((pred[:, 3:5].sigmoid().sqrt() - true[:, 3:5].sqrt()) ** 2).sum()
    loss_cls = F.cross_entropy(pred[:, 5:], true[:, 5].long(), reduction="sum")
    return (loss_obj + box_weight * (loss_xy + loss_wh) + loss_cls) / len(output)


def decode_grid(output: torch.Tensor, image_size: int, min_score: float = 0.05) -> list[Target]:
    """Every cell's box of outputs (B, 5 + C, S, S) that scores at least ``min_score``, before any NMS.

    The score is objectness times the top class probability. Returns B dicts of ``boxes`` (n, 4) xyxy
    in pixels, ``scores`` (n,) and ``labels`` (n,).
    """
    out = output.permute(0, 2, 3, 1)
    stride = image_size / out.shape[1]
    rows, cols = torch.meshgrid(torch.arange(out.shape[1]), torch.arange(out.shape[2]), indexing="ij")
    cx, cy = (cols + out[..., 1].sigmoid()) * stride, (rows + out[..., 2].sigmoid()) * stride
    w, h = out[..., 3].sigmoid() * image_size, out[..., 4].sigmoid() * image_size
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1).flatten(1, 2)
    class_prob, labels = out[..., 5:].softmax(dim=-1).max(dim=-1)
    scores = (out[..., 0].sigmoid() * class_prob).flatten(1)
    result = []
    for b, s, l in zip(boxes, scores, labels.flatten(1)):
        confident = s >= min_score
        result.append({"boxes": b[confident], "scores": s[confident], "labels": l[confident]})
    return result
