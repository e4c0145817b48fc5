"""Where and at what size a notebook runs: device, seeding, cache folder and run profiles.

A profile fixes every size a notebook uses (examples, epochs, image side, width), so one notebook runs
in seconds under ``ci`` (tests and grading), in minutes under ``cpu`` and at full size under ``gpu``.
It is chosen by the ``CVCOURSE_PROFILE`` environment variable; ``auto`` (the default) picks ``gpu``
when CUDA is available and ``cpu`` otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import numpy as np
import torch

from cvcourse.errors import unknown_choice

PROFILE_ENV = "CVCOURSE_PROFILE"
DEVICE_ENV = "CVCOURSE_DEVICE"
CACHE_ENV = "CVCOURSE_CACHE"


@dataclasses.dataclass(frozen=True)
class Profile:
    """The sizes one run of a notebook uses.

    Attributes:
        name: ``ci``, ``cpu`` or ``gpu``.
        n_train: training examples to draw (a dataset with fewer uses all it has).
        n_test: held-out examples to draw.
        epochs: passes over the training set.
        batch_size: examples per optimisation step.
        image_size: side in pixels of generated images.
        width: channels of a model's first stage; later stages are multiples of it.
        steps: iterations of loops that are not epochs (attack steps, timing repeats, searches).
    """

    name: str
    n_train: int
    n_test: int
    epochs: int
    batch_size: int
    image_size: int
    width: int
    steps: int


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", n_train=600, n_test=300, epochs=2, batch_size=64, image_size=32, width=8, steps=5),
    "cpu": Profile("cpu", n_train=4000, n_test=1000, epochs=6, batch_size=64, image_size=64, width=16, steps=40),
    "gpu": Profile("gpu", n_train=20000, n_test=5000, epochs=20, batch_size=256, image_size=128, width=32, steps=200),
}


def profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, else the one ``CVCOURSE_PROFILE`` names, else ``auto``.

    ``auto`` means ``gpu`` when CUDA is available and ``cpu`` otherwise.
    Raises ``CvcourseError`` (one line, listing the valid names) for any other name.
    """
    chosen = (name or os.environ.get(PROFILE_ENV) or "auto").strip().lower()
    if chosen == "auto":
        chosen = "gpu" if torch.cuda.is_available() else "cpu"
    if chosen not in PROFILES:
        raise unknown_choice("profile", chosen, [*PROFILES, "auto"])
    return PROFILES[chosen]


def device() -> torch.device:
    """The device to compute on: ``CVCOURSE_DEVICE`` if set, else CUDA when available, else the CPU."""
    requested = os.environ.get(DEVICE_ENV)
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def cache_dir(*parts: str) -> Path:
    """A folder under the course cache (``CVCOURSE_CACHE``, default ``~/.cache/cvcourse``), created.

    Notebooks write here and nowhere else, so a notebook folder stays exactly as released.
    """
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cvcourse")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
