"""Seeded videos of moving objects with ground-truth trajectories, look-alike distractors and occluders.

Tracking notebooks (single-object Siamese tracking, multi-object tracking, tracking through occlusion)
need videos whose every box is known. ``moving_objects`` draws coloured shapes that drift and bounce over
a textured background; ``occluders`` bars are drawn on top of them, so an object can vanish for several
frames while its true box keeps moving. ``detections`` turns a video's ground truth into what a detector
would report (jittered boxes, misses, false alarms), which is what a tracking-by-detection method sees.

Boxes are ``(x1, y1, x2, y2)`` in pixels, the torchvision convention.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

SHAPES = ("square", "disk", "diamond", "cross")
# Well-separated hues, so that objects differ in appearance (re-identification needs that).
PALETTE = np.array([
    [0.90, 0.20, 0.15], [0.15, 0.55, 0.95], [0.95, 0.80, 0.10], [0.20, 0.80, 0.30],
    [0.75, 0.25, 0.85], [0.95, 0.50, 0.10], [0.10, 0.85, 0.85], [0.95, 0.45, 0.65],
])


@dataclasses.dataclass
class Video:
    """One synthetic video and its ground truth.

    Attributes:
        frames: ``(T, 3, H, W)`` float in [0, 1].
        boxes: ``(T, N, 4)`` true box of each of the ``N`` objects in every frame, occluded or not.
        visibility: ``(T, N)`` fraction of each object's pixels that are not hidden, in [0, 1].
        ids: ``(N,)`` identity of each object (its column in ``boxes``).
        distractor: ``(N,)`` True for look-alikes of object 0 (the target of single-object tracking).
        occluders: ``(K, 4)`` boxes of the bars drawn over everything.
    """

    frames: torch.Tensor
    boxes: torch.Tensor
    visibility: torch.Tensor
    ids: torch.Tensor
    distractor: torch.Tensor
    occluders: torch.Tensor

    @property
    def visible(self) -> torch.Tensor:
        """``(T, N)`` bool: at least half of the object can be seen."""
        return self.visibility >= 0.5

    def __len__(self) -> int:
        return self.frames.shape[0]


def _shape_mask(shape: str, rows: np.ndarray, cols: np.ndarray, cy: float, cx: float, half: float) -> np.ndarray:
    dy, dx = np.abs(rows - cy), np.abs(cols - cx)
    if shape == "square":
        return (dy <= half) & (dx <= half)
    if shape == "disk":
        return dy ** 2 + dx ** 2 <= half ** 2
    if shape == "diamond":
        return dy + dx <= half
    bar = half * 0.4  # cross
    return ((dy <= half) & (dx <= bar)) | ((dx <= half) & (dy <= bar))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` smooth grey texture: low-frequency noise, so objects must be told from clutter."""
    coarse = rng.uniform(0.25, 0.55, size=(size // 8 + 2, size // 8 + 2))
    grid = np.linspace(0, coarse.shape[0] - 1.001, size)
    i0, frac = grid.astype(int), grid - grid.astype(int)
    rows = coarse[i0] * (1 - frac)[:, None] + coarse[i0 + 1] * frac[:, None]
    smooth = rows[:, i0] * (1 - frac)[None] + rows[:, i0 + 1] * frac[None]
    return np.repeat(smooth[..., None], 3, axis=2) + rng.normal(0, 0.02, size=(size, size, 3))


def _trajectories(n: int, n_frames: int, size: int, halves: np.ndarray, speed: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """``(T, N, 2)`` centres (y, x): near-constant velocity with small turns, bouncing off the borders."""
    low, high = halves + 1, size - 1 - halves
    position = rng.uniform(low[:, None], high[:, None], size=(n, 2))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    velocity = rng.uniform(*speed, size=n)[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    centres = np.empty((n_frames, n, 2))
    for t in range(n_frames):
        centres[t] = position
        turn = rng.normal(0, 0.08, size=n)  # radians per frame
        c, s = np.cos(turn), np.sin(turn)
        velocity = np.stack([c * velocity[:, 0] - s * velocity[:, 1], s * velocity[:, 0] + c * velocity[:, 1]], 1)
        position = position + velocity
        for axis in range(2):
            under, over = position[:, axis] < low, position[:, axis] > high
            position[:, axis] = np.where(under, 2 * low - position[:, axis], position[:, axis])
            position[:, axis] = np.where(over, 2 * high - position[:, axis], position[:, axis])
            velocity[:, axis] = np.where(under | over, -velocity[:, axis], velocity[:, axis])
    return centres


def _occluder_boxes(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(K, 4)`` bars, alternately vertical and horizontal, each about a fifth of the frame thick."""
    boxes = []
    for k in range(count):
        thick = rng.uniform(0.14, 0.2) * size
        start = rng.uniform(0.15 * size, 0.85 * size - thick)
        boxes.append([start, 0, start + thick, size] if k % 2 == 0 else [0, start, size, start + thick])
    return np.array(boxes, dtype=np.float64).reshape(count, 4)


def moving_objects(
    n_frames: int = 40,
    size: int = 64,
    n_objects: int = 3,
    n_distractors: int = 0,
    n_occluders: int = 0,
    object_size: tuple[float, float] = (0.1, 0.16),
    speed: tuple[float, float] = (0.8, 2.0),
    seed: int = 0,
) -> Video:
    """A video of ``n_objects`` distinct shapes plus ``n_distractors`` look-alikes of object 0.

    Args:
        n_frames: frames ``T``.
        size: frame side ``H = W`` in pixels.
        n_objects: objects of different colours and shapes (object 0 is the single-object target).
        n_distractors: extra objects with object 0's shape and a colour close to its colour.
        n_occluders: grey bars drawn over everything (objects pass behind them).
        object_size: range of an object's side as a fraction of ``size``.
        speed: range of an object's speed in pixels per frame.
        seed: the whole video is a function of it.

    Returns:
        a ``Video``: ``frames (T, 3, H, W)``, ``boxes (T, N, 4)``, ``visibility (T, N)`` with
        ``N = n_objects + n_distractors``.
    """
    rng = np.random.default_rng(seed)
    n = n_objects + n_distractors
    halves = rng.uniform(*object_size, size=n) * size / 2
    colours = PALETTE[rng.permutation(len(PALETTE))[:n_objects] % len(PALETTE)] if n_objects else np.zeros((0, 3))
    shapes = [SHAPES[(i + int(rng.integers(len(SHAPES)))) % len(SHAPES)] for i in range(n_objects)]
    if n_distractors:
        colours = np.concatenate([colours, np.clip(colours[0] + rng.normal(0, 0.06, (n_distractors, 3)), 0, 1)])
        shapes += [shapes[0]] * n_distractors
        halves[n_objects:] = halves[0] * rng.uniform(0.85, 1.15, size=n_distractors)
    centres = _trajectories(n, n_frames, size, halves, speed, rng)
    bars = _occluder_boxes(n_occluders, size, rng)
    background = _background(size, rng)

    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    hidden = np.zeros((size, size), dtype=bool)
    for x1, y1, x2, y2 in bars:
        hidden |= (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    frames = np.empty((n_frames, size, size, 3))
    visibility = np.zeros((n_frames, n))
    for t in range(n_frames):
        frame = background.copy()
        covered = hidden.copy()
        for i in reversed(range(n)):  # object 0 in front of the others
            mask = _shape_mask(shapes[i], rows, cols, centres[t, i, 0], centres[t, i, 1], halves[i])
            frame[mask] = colours[i] * rng.uniform(0.92, 1.0)  # a little flicker in brightness
        for i in range(n):  # what hides object i: the bars and every object drawn after it
            mask = _shape_mask(shapes[i], rows, cols, centres[t, i, 0], centres[t, i, 1], halves[i])
            visibility[t, i] = (mask & ~covered).sum() / max(mask.sum(), 1)
            covered |= mask
        frame[hidden] = 0.45
        frames[t] = frame + rng.normal(0, 0.02, size=frame.shape)

    yx = centres
    boxes = np.stack([yx[..., 1] - halves, yx[..., 0] - halves, yx[..., 1] + halves, yx[..., 0] + halves], axis=-1)
    return Video(
        frames=torch.from_numpy(np.clip(frames, 0, 1)).permute(0, 3, 1, 2).float().contiguous(),
        boxes=torch.from_numpy(boxes).float(),
        visibility=torch.from_numpy(visibility).float(),
        ids=torch.arange(n),
        distractor=torch.arange(n) >= n_objects,
        occluders=torch.from_numpy(bars).float(),
    )


def detections(
    video: Video,
    jitter: float = 1.0,
    miss_rate: float = 0.05,
    false_alarms: float = 0.1,
    min_visibility: float = 0.5,
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """What a detector would report on ``video``: one ``(K_t, 4)`` tensor of boxes per frame.

    Each object seen at ``min_visibility`` or more is detected with probability ``1 - miss_rate``, its
    box's corners jittered by Gaussian noise of ``jitter`` pixels; a Poisson number (mean
    ``false_alarms``) of object-sized false boxes is added per frame; rows are shuffled.

    Returns:
        ``(boxes, truth)``: per frame, the boxes ``(K_t, 4)`` and the object id each came from
        ``(K_t,)`` (``-1`` for a false alarm). A tracker must only see ``boxes``; ``truth`` is for checks.
    """
    rng = np.random.default_rng(seed)
    size = video.frames.shape[-1]
    boxes, truth = [], []
    sides = (video.boxes[0, :, 2] - video.boxes[0, :, 0]).numpy()
    for t in range(len(video)):
        seen = (video.visibility[t].numpy() >= min_visibility) & (rng.random(len(video.ids)) >= miss_rate)
        found = video.boxes[t].numpy()[seen] + rng.normal(0, jitter, size=(int(seen.sum()), 4))
        ids = video.ids.numpy()[seen]
        n_false = rng.poisson(false_alarms)
        side = rng.uniform(sides.min(), sides.max(), size=n_false) if len(sides) else np.zeros(n_false)
        corner = rng.uniform(0, size - side[:, None], size=(n_false, 2))
        fake = np.concatenate([corner, corner + side[:, None]], axis=1)
        order = rng.permutation(len(ids) + n_false)
        boxes.append(torch.from_numpy(np.concatenate([found, fake])[order]).float().reshape(-1, 4))
        truth.append(torch.from_numpy(np.concatenate([ids, -np.ones(n_false, dtype=ids.dtype)])[order]).long())
    return boxes, truth


def crop(frame: torch.Tensor, centre: tuple[float, float], side: float, out_size: int) -> torch.Tensor:
    """A square window of ``side`` pixels centred at ``centre = (x, y)``, resampled to ``out_size``.

    ``frame``: ``(C, H, W)``; returns ``(C, out_size, out_size)``. Outside the frame the window is filled
    with the frame's mean colour (as SiamFC pads), so a window may hang over the border.
    """
    C, H, W = frame.shape
    x, y = centre
    steps = (torch.arange(out_size, dtype=torch.float32) + 0.5) / out_size - 0.5
    xs = (x + steps * side) / W * 2 - 1      # grid_sample's [-1, 1] coordinates (align_corners=False)
    ys = (y + steps * side) / H * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
    mean = frame.mean(dim=(1, 2), keepdim=True)
    window = torch.nn.functional.grid_sample((frame - mean)[None], grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=False)
    return window[0] + mean
