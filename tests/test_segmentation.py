"""Tests of cvcourse.segmentation: data view, pixel-wise training loop, prediction and plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from cvcourse.data import ShapeScenes  # noqa: E402
from cvcourse.segmentation import (  # noqa: E402
    CLASS_COLOURS, CLASS_NAMES, class_pixel_counts, colourize, evaluate_segmentation, fit_segmentation, overlay,
    predict_masks, predict_scores, shape_segmentation, show_segmentation,
)

CPU = torch.device("cpu")


def test_shape_segmentation_matches_the_scenes():
    data = shape_segmentation(5, image_size=24, seed=3, max_objects=2)
    scenes = ShapeScenes(5, image_size=24, seed=3, max_objects=2)
    images, maps = data.tensors
    assert images.shape == (5, 3, 24, 24) and maps.shape == (5, 24, 24) and maps.dtype == torch.long
    for i in range(5):
        image, target = scenes[i]
        assert torch.equal(images[i], image)
        assert torch.equal(maps[i], target["semantic"])
    assert CLASS_NAMES[0] == "background" and len(CLASS_NAMES) == len(scenes.classes) + 1
    assert int(maps.max()) <= len(scenes.classes) and int(maps.min()) >= 0


def test_class_pixel_counts_counts_every_pixel():
    maps = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 3]]])
    data = TensorDataset(torch.zeros(2, 3, 2, 2), maps)
    assert class_pixel_counts(data, 4).tolist() == [4, 1, 2, 1]
    assert class_pixel_counts(data, 5).tolist() == [4, 1, 2, 1, 0]


class FixedScores(nn.Module):
    """Scores that say class 1 where the first channel is above 0.5, else class 0."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        one = (x[:, :1] > 0.5).float()
        return torch.cat([1 - one, one], dim=1) + 0 * self.dummy


def test_evaluate_and_predict_against_hand_counts():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 5, 4, generator=gen)
    y = torch.randint(0, 2, (7, 5, 4), generator=gen)
    data = TensorDataset(x, y)
    model = FixedScores()
    masks = predict_masks(model, data, batch_size=3, device=CPU)
    assert torch.equal(masks, (x[:, 0] > 0.5).long())
    scores = predict_scores(model, data, batch_size=2, device=CPU)
    assert scores.shape == (7, 2, 5, 4) and torch.equal(scores.argmax(1), masks)
    result = evaluate_segmentation(model, data, batch_size=3, device=CPU)
    assert abs(result["pixel_accuracy"] - (masks == y).sum().item() / y.numel()) < 1e-12
    per_batch = [F.cross_entropy(model(x[i:i + 3]), y[i:i + 3]).item() * len(y[i:i + 3]) for i in (0, 3, 6)]
    assert abs(result["loss"] - sum(per_batch) / 7) < 1e-6


def test_fit_segmentation_learns_a_pixel_rule():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, 8, 8, generator=gen)
    y = (x[:, 0] > x[:, 1]).long()
    data = TensorDataset(x, y)
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 1)
    calls = []

    def metric(pred, target):
        calls.append(pred.shape)
        return (pred == target).float().mean().item()

    history = fit_segmentation(model, data, epochs=15, batch_size=16, val_data=data, metric=metric,
                               device=CPU, progress=False, optimizer=torch.optim.Adam(model.parameters(), lr=0.05))
    assert len(history.train_loss) == len(history.val_loss) == len(history.val_metric) == len(history.seconds) == 15
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_pixel_accuracy[-1] > 0.9
    assert calls[0] == (64, 8, 8)
    assert abs(history.val_metric[-1] - history.val_pixel_accuracy[-1]) < 1e-6
    assert all(0.0 <= a <= 1.0 for a in history.train_pixel_accuracy)


def test_fit_segmentation_skips_frozen_parameters():
    model = nn.Conv2d(3, 2, 1)
    model.bias.requires_grad_(False)
    before = model.bias.detach().clone()
    data = TensorDataset(torch.rand(8, 3, 4, 4), torch.randint(0, 2, (8, 4, 4)))
    fit_segmentation(model, data, epochs=2, batch_size=4, device=CPU, progress=False)
    assert torch.equal(model.bias.detach(), before)


def test_colourize_and_overlay():
    class_map = torch.tensor([[0, 1], [2, 3]])
    rgb = colourize(class_map)
    assert rgb.shape == (2, 2, 3)
    for (i, j), c in np.ndenumerate(class_map.numpy()):
        assert np.allclose(rgb[i, j], CLASS_COLOURS[c])
    assert np.allclose(rgb[0, 0], 0.0)
    image = torch.full((3, 2, 2), 0.5)
    blended = overlay(image, class_map, alpha=0.5)
    assert np.allclose(blended[0, 0], 0.5)                               # background untouched
    assert np.allclose(blended[1, 1], 0.25 + 0.5 * CLASS_COLOURS[3])


def test_show_segmentation_draws_one_row_per_map():
    data = shape_segmentation(3, image_size=16, seed=0)
    images, maps = data.tensors
    fig = show_segmentation(images, maps, {"a": maps, "b": torch.zeros_like(maps)}, title="t")
    assert len(fig.axes) == 4 * 3
    plt.close(fig)
