"""Tests of cvcourse.segmentation: data view, predicted class maps and plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from cvcourse.data import ShapeScenes  # noqa: E402
from cvcourse.segmentation import (  # noqa: E402
    CLASS_COLOURS, CLASS_NAMES, class_pixel_counts, colourize, overlay, predict_masks, shape_segmentation,
    show_segmentation,
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


def test_predict_masks_is_the_argmax_of_the_scores():
    x = torch.rand(7, 2, 5, 4, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, torch.zeros(7, 5, 4, dtype=torch.long))
    masks = predict_masks(nn.Identity(), data, batch_size=3, device=CPU)   # batches of 3, 3, 1
    assert masks.dtype == torch.long and torch.equal(masks, (x[:, 1] > x[:, 0]).long())


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
