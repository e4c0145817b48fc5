"""cvcourse.transfer: texture patches come from the right photo and band, normalisation and cached features
match independent computations."""

import collections

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

from cvcourse.data import photo
from cvcourse.errors import CvcourseError
from cvcourse.transfer import (
    TEXTURES, extract_features, grey, imagenet_normalize, normalized, pooled_features, texture_patches,
)


def _locate(crop: torch.Tensor, image: torch.Tensor) -> set[int]:
    """Top rows r where the (1, p, p) crop occurs exactly in the (1, H, W) image (brute force)."""
    p = crop.shape[-1]
    height, width = image.shape[1:]
    tops = set()
    for r, c in (image[0] == crop[0, 0, 0]).nonzero().tolist():  # candidates: the top-left pixel matches
        if r + p <= height and c + p <= width and torch.equal(image[0, r:r + p, c:c + p], crop[0]):
            tops.add(r)
    return tops


@pytest.mark.parametrize("split", ["train", "test"])
def test_patches_are_crops_of_their_photo_in_their_split_bands(split):
    patch = 32
    data = texture_patches(split, n_per_class=3, image_size=patch, patch=patch, classes=("brick", "camera"), seed=1)
    images, labels = data.tensors
    assert images.shape == (6, 3, patch, patch) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    for image, label in zip(images, labels):
        source = photo(("brick", "camera")[label])[:1]  # both photos are grey already
        tops = _locate(image[:1], source)
        assert tops, "a patch is not a crop of its photo"
        # band b = r / patch; every third band (b % 3 == 2) is the test split
        assert any(r % patch == 0 and ((r // patch) % 3 == 2) == (split == "test") for r in tops)


def test_train_and_test_patches_never_overlap_in_rows():
    patch = 24
    for name in ("gravel", "coins"):
        train = texture_patches("train", 40, patch, patch, classes=(name,), seed=0).tensors[0]
        test = texture_patches("test", 40, patch, patch, classes=(name,), seed=0).tensors[0]
        source = grey(photo(name))
        train_rows = set().union(*(_locate(x[:1], source) for x in train))
        test_rows = set().union(*(_locate(x[:1], source) for x in test))
        assert all(abs(a - b) >= patch for a in train_rows for b in test_rows)


def test_patches_are_seeded_resized_and_in_range():
    a = texture_patches("train", 4, image_size=40, seed=3)
    b = texture_patches("train", 4, image_size=40, seed=3)
    c = texture_patches("train", 4, image_size=40, seed=4)
    assert torch.equal(a.tensors[0], b.tensors[0]) and not torch.equal(a.tensors[0], c.tensors[0])
    assert a.tensors[0].shape == (4 * len(TEXTURES), 3, 40, 40)
    assert a.tensors[0].min() >= 0 and a.tensors[0].max() <= 1
    assert collections.Counter(a.tensors[1].tolist()) == {k: 4 for k in range(len(TEXTURES))}


def test_grey_uses_luma_weights_and_rejects_odd_channels():
    rgb = torch.rand(3, 5, 7)
    expected = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert torch.allclose(grey(rgb)[0], expected, atol=1e-6)
    with pytest.raises(CvcourseError):
        grey(torch.rand(2, 4, 4))
    with pytest.raises(CvcourseError):
        texture_patches("val", 1)


def test_imagenet_normalize_matches_torchvision():
    x = torch.rand(4, 3, 9, 11)
    reference = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(x)
    assert torch.allclose(imagenet_normalize(x), reference, atol=1e-6)
    data = normalized(TensorDataset(x, torch.arange(4)))
    assert torch.allclose(data.tensors[0], reference, atol=1e-6) and data.tensors[1].tolist() == [0, 1, 2, 3]


class _Tiny(nn.Module):
    """A backbone with a ``.features`` stage, batch norm and dropout, like MobileNetV2 (which is slow here)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Dropout(0.5))
        self.classifier = nn.Linear(5, 2)


def test_extract_features_is_the_eval_mode_pooled_backbone_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCOURSE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = _Tiny().train()
    model.features[1].running_mean.normal_()
    model.features[1].running_var.uniform_(0.5, 2)
    x = torch.randn(7, 3, 8, 8)
    # independent: conv, batch norm with running statistics, ReLU, mean over the 6 x 6 positions
    conv, bn = model.features[0], model.features[1]
    z = torch.nn.functional.conv2d(x, conv.weight, conv.bias)
    z = (z - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    expected = (z * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)).relu().mean(dim=(2, 3))
    data = TensorDataset(x, torch.arange(7))
    features = extract_features(model, data, batch_size=3, progress=False)
    assert torch.allclose(features.tensors[0], expected.detach(), atol=1e-5)
    assert features.tensors[1].tolist() == list(range(7))
    assert model.training, "the model's mode is restored"
    assert len(list((tmp_path / "transfer").glob("features-*.pt"))) == 1
    # a cache hit: the stored file is read back, even after the live model changes its mode
    stored = next((tmp_path / "transfer").glob("features-*.pt"))
    torch.save(torch.full((7, 5), 42.0), stored)
    assert torch.equal(extract_features(model, data, progress=False).tensors[0], torch.full((7, 5), 42.0))
    # different weights, different key: recomputed
    with torch.no_grad():
        conv.weight.add_(1.0)
    again = extract_features(model, data, progress=False).tensors[0]
    assert not torch.equal(again, torch.full((7, 5), 42.0))
    assert torch.allclose(again, pooled_features(model.eval(), x).detach(), atol=1e-5)
