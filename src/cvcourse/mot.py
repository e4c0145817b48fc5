"""CLEAR-MOT evaluation of multi-object trackers, and a picture of one tracked frame.

A tracker reports, in every frame, boxes with track ids; the ground truth has boxes with object ids.
``clear_mot`` matches the two frame by frame the way the CLEAR-MOT metrics (Bernardin and Stiefelhagen
2008) and the ``motmetrics`` package do:

1. an object keeps the hypothesis it was last matched to if the two still overlap (IoU >= threshold);
2. the remaining objects and hypotheses are matched by the Hungarian algorithm on ``1 - IoU``, pairs
   below the threshold forbidden;
3. an object matched to a hypothesis other than the one it was last matched to (in any earlier frame)
   is an identity switch; an object left unmatched is a miss; a hypothesis left unmatched a false
   positive.

``MOTA = 1 - (misses + false positives + switches) / objects``, summed over all frames (and videos).

Boxes are ``(x1, y1, x2, y2)`` in pixels, as in ``cvcourse.videos``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from cvcourse.videos import Video


def box_iou(a, b) -> np.ndarray:
    """``(N, M)`` intersection over union of xyxy boxes ``a (N, 4)`` and ``b (M, 4)`` (arrays or tensors)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def ground_truth(video: Video, min_visibility: float = 0.5) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The objects a tracker is judged on: per frame, the true boxes ``(G_t, 4)`` and ids ``(G_t,)`` of
    the objects seen at ``min_visibility`` or more (an object hidden behind an occluder is not expected)."""
    boxes, ids = [], []
    for t in range(len(video)):
        seen = video.visibility[t] >= min_visibility
        boxes.append(video.boxes[t][seen])
        ids.append(video.ids[seen])
    return boxes, ids


@dataclasses.dataclass
class MOTResult:
    """CLEAR-MOT counts over one or more videos; add results with ``+`` or ``sum``.

    Attributes:
        objects: ground-truth boxes over all frames (the denominator of MOTA).
        matches: objects matched to a hypothesis (switches included).
        misses: objects matched to nothing (false negatives).
        false_positives: hypotheses matched to nothing.
        switches: matches whose hypothesis differs from the object's previous one.
        iou_sum: total IoU of the matched pairs (for MOTP).
        switch_events: ``(frame, object id, old hypothesis, new hypothesis)`` per switch.
        matched: per frame, ``{object id: hypothesis id}`` (empty lists after adding results).
    """

    objects: int = 0
    matches: int = 0
    misses: int = 0
    false_positives: int = 0
    switches: int = 0
    iou_sum: float = 0.0
    switch_events: list = dataclasses.field(default_factory=list)
    matched: list = dataclasses.field(default_factory=list)

    @property
    def mota(self) -> float:
        """Multi-object tracking accuracy, ``1 - (FN + FP + IDSW) / GT`` (NaN without objects)."""
        if self.objects == 0:
            return float("nan")
        return 1.0 - (self.misses + self.false_positives + self.switches) / self.objects

    @property
    def motp(self) -> float:
        """Mean IoU of the matched pairs (``motmetrics`` reports ``1 -`` this)."""
        return self.iou_sum / self.matches if self.matches else float("nan")

    def __add__(self, other: "MOTResult") -> "MOTResult":
        if other == 0:  # so that sum() works
            return self
        return MOTResult(self.objects + other.objects, self.matches + other.matches, self.misses + other.misses,
                         self.false_positives + other.false_positives, self.switches + other.switches,
                         self.iou_sum + other.iou_sum, [], [])

    __radd__ = __add__

    def summary(self) -> str:
        return (f"MOTA {self.mota:.3f} | ID switches {self.switches} | false positives {self.false_positives} | "
                f"misses {self.misses} | objects {self.objects} | MOTP (mean IoU) {self.motp:.3f}")


def clear_mot(
    gt_boxes: Sequence,
    gt_ids: Sequence,
    hyp_boxes: Sequence,
    hyp_ids: Sequence,
    iou_threshold: float = 0.5,
) -> MOTResult:
    """CLEAR-MOT counts of one video.

    Args:
        gt_boxes, gt_ids: per frame, true boxes ``(G_t, 4)`` and object ids ``(G_t,)``.
        hyp_boxes, hyp_ids: per frame, the tracker's boxes ``(H_t, 4)`` and track ids ``(H_t,)``.
        iou_threshold: a pair can match only with IoU at least this.
    """
    if not (len(gt_boxes) == len(gt_ids) == len(hyp_boxes) == len(hyp_ids)):
        raise ValueError("ground truth and hypotheses must have one entry per frame")
    result = MOTResult()
    last: dict[int, int] = {}  # object id -> the hypothesis it was last matched to
    for t in range(len(gt_boxes)):
        oids = [int(i) for i in np.asarray(gt_ids[t]).reshape(-1)]
        hids = [int(i) for i in np.asarray(hyp_ids[t]).reshape(-1)]
        if len(set(hids)) != len(hids):
            raise ValueError(f"frame {t}: a track id appears twice")
        iou = box_iou(gt_boxes[t], hyp_boxes[t])
        allowed = iou >= iou_threshold
        pairs: dict[int, int] = {}  # row -> column
        # 1. keep last correspondences that are still valid
        for i, o in enumerate(oids):
            if o in last and last[o] in hids:
                j = hids.index(last[o])
                if allowed[i, j] and j not in pairs.values():
                    pairs[i] = j
        # 2. Hungarian on 1 - IoU for the rest
        rows = [i for i in range(len(oids)) if i not in pairs]
        cols = [j for j in range(len(hids)) if j not in pairs.values()]
        if rows and cols:
            cost = np.where(allowed[np.ix_(rows, cols)], 1.0 - iou[np.ix_(rows, cols)], 1e6)
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] < 1e6:
                    i, j = rows[r], cols[c]
                    pairs[i] = j
                    if oids[i] in last and last[oids[i]] != hids[j]:
                        result.switches += 1
                        result.switch_events.append((t, oids[i], last[oids[i]], hids[j]))
        for i, j in pairs.items():
            last[oids[i]] = hids[j]
            result.iou_sum += float(iou[i, j])
        result.objects += len(oids)
        result.matches += len(pairs)
        result.misses += len(oids) - len(pairs)
        result.false_positives += len(hids) - len(pairs)
        result.matched.append({oids[i]: hids[j] for i, j in pairs.items()})
    return result


def draw_tracking(ax, frame: torch.Tensor, detections=None, tracks=None, track_ids=None, truth=None,
                  truth_ids=None, title: str | None = None, colours: Sequence | None = None):
    """One frame with what a tracker saw and what it said.

    Args:
        frame: ``(3, H, W)`` image in [0, 1].
        detections: ``(K, 4)`` detector boxes, drawn dashed white.
        tracks, track_ids: ``(M, 4)`` boxes and ``(M,)`` ids the tracker reports, drawn in a colour per id
            with the id written on the box.
        truth, truth_ids: ``(G, 4)`` true boxes and object ids, drawn thin black with "gt <id>" below.
    """
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    colours = colours or plt.get_cmap("tab10").colors
    ax.imshow(frame.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")

    def rectangle(box, **style):
        x1, y1, x2, y2 = [float(v) for v in box]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))

    if truth is not None:
        for box, oid in zip(truth, truth_ids if truth_ids is not None else [None] * len(truth)):
            rectangle(box, edgecolor="black", linewidth=1.0)
            if oid is not None:
                ax.text(float(box[0]), float(box[3]) + 0.5, f"gt {int(oid)}", fontsize=7, va="top", color="black")
    if detections is not None:
        for box in detections:
            rectangle(box, edgecolor="white", linewidth=1.0, linestyle="--")
    if tracks is not None:
        for box, tid in zip(tracks, track_ids):
            colour = colours[int(tid) % len(colours)]
            rectangle(box, edgecolor=colour, linewidth=2.0)
            ax.text(float(box[0]), float(box[1]) - 0.5, str(int(tid)), fontsize=8, va="bottom", color="white",
                    bbox=dict(facecolor=colour, edgecolor="none", pad=1.0))
    height, width = frame.shape[-2:]
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax
