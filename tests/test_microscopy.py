"""cvcourse.microscopy: synthetic cells and volumes, overlays, and the segmentation training loop."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from scipy import ndimage

from cvcourse import microscopy
from cvcourse.errors import CvcourseError

matplotlib.use("Agg")


def test_cells_are_seeded_and_shaped():
    data = microscopy.CellImages(4, image_size=40, seed=3)
    image, target = data[1]
    again, target_again = microscopy.CellImages(4, image_size=40, seed=3)[1]
    assert image.shape == (1, 40, 40) and image.dtype == torch.float32
    assert torch.equal(image, again) and torch.equal(target["instances"], target_again["instances"])
    assert not torch.equal(image, microscopy.CellImages(4, image_size=40, seed=4)[1][0])
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["mask"].shape == (40, 40) and target["mask"].dtype == torch.long
    with pytest.raises(IndexError):
        data[4]


def test_masks_agree_with_each_other():
    for i in range(6):
        _, target = microscopy.CellImages(6, image_size=48, min_cells=2, max_cells=6, seed=0)[i]
        mask, instances, nuclei = target["mask"], target["instances"], target["nuclei"]
        assert torch.equal(mask, (instances > 0).long())
        assert 2 <= len(instances.unique()) - 1 <= 6          # cells may be cut by the border, never all lost
        assert not (nuclei & (mask == 0)).any()               # every nucleus lies inside a cell
        assert set(mask.unique().tolist()) <= {0, 1}


def test_touching_cells_merge_in_the_semantic_mask():
    data = microscopy.CellImages(30, image_size=48, min_cells=4, max_cells=6, touching=1.0, seed=0)
    merged = 0
    for i in range(len(data)):
        target = data[i][1]
        cells = len(target["instances"].unique()) - 1
        regions = ndimage.label(target["mask"].numpy())[1]
        merged += regions < cells
    assert merged >= 20
    apart = microscopy.CellImages(30, image_size=48, min_cells=2, max_cells=2, touching=0.0, seed=0)
    assert sum(ndimage.label(apart[i][1]["mask"].numpy())[1] < 2 for i in range(30)) < 10


def test_cells_are_brighter_than_background_and_noise_is_added():
    image, target = microscopy.CellImages(1, image_size=64, noise=0.0, blur=0.0, debris=0, seed=1)[0]
    inside, outside = image[0][target["mask"] == 1], image[0][target["mask"] == 0]
    assert inside.mean() > outside.mean() + 0.1
    noisy, _ = microscopy.CellImages(1, image_size=64, noise=0.1, blur=0.0, debris=0, seed=1)[0]
    residual = (noisy - image)[0][(image[0] > 0.1) & (image[0] < 0.9)]
    assert 0.07 < residual.std() < 0.13


def test_bad_counts_are_one_line_errors():
    with pytest.raises(CvcourseError):
        microscopy.CellImages(2, min_cells=5, max_cells=2)
    with pytest.raises(CvcourseError):
        microscopy.BlobVolumes(2, min_blobs=-1)


def test_volumes():
    data = microscopy.BlobVolumes(3, size=20, min_blobs=1, max_blobs=3, seed=2)
    volume, target = data[0]
    assert volume.shape == (1, 20, 20, 20) and target["mask"].shape == (20, 20, 20)
    assert torch.equal(volume, microscopy.BlobVolumes(3, size=20, min_blobs=1, max_blobs=3, seed=2)[0][0])
    assert torch.equal(target["mask"], (target["instances"] > 0).long())
    assert 0 < target["mask"].float().mean() < 0.5
    assert volume[0][target["mask"] == 1].mean() > volume[0][target["mask"] == 0].mean() + 0.2


def test_volume_blob_is_an_ellipsoid_of_the_drawn_size():
    # One blob, no blur or noise: its voxel count is close to 4/3 pi a b c for some axes in the drawn range.
    _, target = microscopy.BlobVolumes(1, size=40, min_blobs=1, max_blobs=1, blur=0, noise=0, seed=5)[0]
    voxels = target["mask"].sum().item()
    low, high = 4 / 3 * np.pi * (0.08 * 40) ** 3, 4 / 3 * np.pi * (0.2 * 40) ** 3
    assert low * 0.8 < voxels < high * 1.2
    assert ndimage.label(target["mask"].numpy())[1] == 1


def test_as_tensors():
    images, masks = microscopy.as_tensors(microscopy.CellImages(3, image_size=16))
    assert images.shape == (3, 1, 16, 16) and masks.shape == (3, 16, 16)
    _, nuclei = microscopy.as_tensors(microscopy.CellImages(3, image_size=16), key="nuclei")
    assert nuclei.dtype == torch.bool and nuclei.shape == (3, 16, 16)
    with pytest.raises(CvcourseError):
        microscopy.as_tensors(microscopy.CellImages(0))


def test_overlay_colours_errors():
    image = torch.zeros(1, 2, 2)
    truth = torch.tensor([[1, 1], [0, 0]])
    guess = torch.tensor([[1, 0], [1, 0]])
    rgb = microscopy.overlay(image, truth, guess, alpha=1.0)
    colours = microscopy.ERROR_COLOURS
    assert np.allclose(rgb[0, 0], colours["true positive"])
    assert np.allclose(rgb[0, 1], colours["false negative"])
    assert np.allclose(rgb[1, 0], colours["false positive"])
    assert np.allclose(rgb[1, 1], 0.0)
    assert microscopy.overlay(image, truth).shape == (2, 2, 3)


def test_show_segmentation_draws_rows():
    images, masks = microscopy.as_tensors(microscopy.CellImages(3, image_size=16))
    fig = microscopy.show_segmentation(images, masks, masks, n=3)
    assert len(fig.axes) == 9
    assert len(microscopy.show_segmentation(images, masks, n=2).axes) == 4
