"""Infrastructure for the object detection notebooks: data in memory, a training loop, mAP and pictures.

Graded components (IoU, NMS, AP, anchors, soft-NMS, ...) never live here. Boxes are ``xyxy`` in pixels
throughout, as in :class:`cvcourse.data.ShapeScenes` and ``torchvision.ops``. A *prediction* and a
*target* are dicts with ``boxes`` (N, 4) float, ``labels`` (N,) long and, for a prediction, ``scores``
(N,) float: the format of torchvision's detection models and of torchmetrics.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

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
