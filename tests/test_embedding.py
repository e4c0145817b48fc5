"""cvcourse.embedding: batched features, the linear probe and the embedding map."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from cvcourse.embedding import features, linear_probe, scatter_embedding  # noqa: E402


def test_features_equal_one_big_batch_for_tensors_and_datasets():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 3, 5, 5, generator=gen)
    weight = torch.randn(75, 4, generator=gen)
    fn = lambda batch: batch.flatten(1) @ weight  # noqa: E731
    whole = x.flatten(1) @ weight  # computed directly, in one batch
    for data in (x, TensorDataset(x, torch.zeros(37))):
        out = features(fn, data, batch_size=8)
        assert out.shape == (37, 4)
        assert torch.allclose(out, whole, atol=1e-5)


def test_features_take_no_gradient_and_come_back_on_the_cpu():
    layer = torch.nn.Linear(3, 2)
    out = features(layer, torch.randn(10, 3), batch_size=4)
    assert not out.requires_grad and out.device.type == "cpu" and out.dtype == torch.float32


def test_features_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        features(lambda b: b, torch.zeros(0, 3))


def test_linear_probe_separates_separable_classes_and_not_random_labels():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0]])
    y = torch.randint(0, 3, (300,), generator=gen)
    x = centres[y] + torch.randn(300, 3, generator=gen)
    accuracy, probe = linear_probe(x[:200], y[:200], x[200:], y[200:])
    assert accuracy == 1.0
    assert probe.predict(centres.numpy()).tolist() == [0, 1, 2]
    # labels that do not depend on the features: a probe cannot do much better than chance (1/3)
    noise = torch.randn(600, 3, generator=gen)
    random_labels = torch.randint(0, 3, (600,), generator=gen)
    chance, _ = linear_probe(noise[:400], random_labels[:400], noise[400:], random_labels[400:])
    assert chance < 0.5


def test_scatter_embedding_draws_every_point_and_spaced_thumbnails():
    gen = torch.Generator().manual_seed(2)
    points = torch.randn(120, 2, generator=gen)
    labels = torch.arange(120) % 4
    images = torch.rand(120, 1, 6, 6, generator=gen)
    ax = scatter_embedding(points, labels, images, n_thumbnails=10, title="map")
    drawn = sum(len(c.get_offsets()) for c in ax.collections)
    assert drawn == 120 and len(ax.collections) == 4
    thumbs = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    assert 1 <= len(thumbs) <= 10
    where = np.array([t.xy for t in thumbs])
    gaps = np.linalg.norm(where[:, None] - where[None], axis=-1) + np.eye(len(where)) * 1e9
    assert gaps.min() >= 0.04 * np.ptp(points.numpy(), axis=0).max() - 1e-9
    assert ax.get_title() == "map"
    plt.close("all")


def test_scatter_embedding_rejects_points_that_are_not_2d():
    with pytest.raises(ValueError):
        scatter_embedding(torch.zeros(5, 3), torch.zeros(5))
