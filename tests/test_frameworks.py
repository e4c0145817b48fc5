"""cvcourse.frameworks: the optional TensorFlow import and the twin CNN in PyTorch and Keras."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from cvcourse import frameworks
from cvcourse.errors import CvcourseError
from cvcourse.frameworks import (LAYERS, TwinCNN, feature_shape, import_tensorflow, keras_layout_forward,
                                 keras_twin, load_into_keras)

SIZES = dict(in_channels=3, num_classes=5, width=4, image_size=13, hidden=6)


@pytest.fixture(scope="module")
def tf():
    module, message = import_tensorflow()
    assert module is not None, f"TensorFlow is part of the install: {message}"
    return module


def test_switched_off_tensorflow_gives_none_and_one_line_hint(monkeypatch):
    monkeypatch.setenv(frameworks.TENSORFLOW_ENV, "0")
    module, message = import_tensorflow()
    assert module is None
    assert "\n" not in message and "pip install" in message and "tensorflow-cpu" in message


def test_keras_twin_without_tensorflow_raises_a_course_error(monkeypatch):
    monkeypatch.setenv(frameworks.TENSORFLOW_ENV, "0")
    with pytest.raises(CvcourseError, match="pip install"):
        keras_twin()


def test_import_tensorflow_describes_versions_and_threads(tf):
    module, message = import_tensorflow()
    assert module is tf
    assert tf.__version__ in message and "thread" in message and "\n" not in message
    assert tf.config.threading.get_inter_op_parallelism_threads() == 1


def test_feature_shape_follows_two_floor_poolings():
    assert feature_shape(8, 28) == (16, 7, 7)
    assert feature_shape(3, 13) == (6, 3, 3)
    with pytest.raises(CvcourseError):
        feature_shape(4, 3)


@pytest.mark.parametrize("image_size", [4, 13, 16])
def test_twin_cnn_shapes(image_size):
    model = TwinCNN(in_channels=2, num_classes=7, width=3, image_size=image_size, hidden=5)
    x = torch.rand(2, 2, image_size, image_size)
    assert tuple(model.features(x).shape[1:]) == model.feature_shape
    assert tuple(model(x).shape) == (2, 7)
    assert model.conv1.bias is None and model.conv2.bias is not None
    assert model.bn1.eps == frameworks.BN_EPS


def test_keras_twin_mirrors_the_pytorch_layers(tf):
    model = keras_twin(**SIZES)
    c, h, w = feature_shape(SIZES["width"], SIZES["image_size"])
    shapes = {layer.name: [tuple(v.shape) for v in layer.weights] for layer in model.layers if layer.weights}
    assert shapes == {
        "conv1": [(3, 3, 3, 4)],
        "bn1": [(4,)] * 4,
        "conv2": [(3, 3, 4, 8), (8,)],
        "fc1": [(h * w * c, 6), (6,)],
        "fc2": [(6, 5), (5,)],
    }
    assert set(shapes) == set(LAYERS)
    assert model.get_layer("bn1").epsilon == pytest.approx(frameworks.BN_EPS)
    assert tuple(model.output.shape) == (None, 5)


def _random_keras_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    weights = {}
    for name in LAYERS:
        arrays = [rng.normal(0, 0.4, np.shape(a)).astype(np.float32) for a in model.get_layer(name).get_weights()]
        if name == "bn1":
            arrays[3] = rng.uniform(0.2, 2.0, arrays[3].shape).astype(np.float32)  # variances are positive
        weights[name] = arrays
    return weights


def test_numpy_model_computes_what_keras_computes(tf):
    model = keras_twin(**SIZES)
    weights = _random_keras_weights(model)
    load_into_keras(model, weights)
    x = np.random.default_rng(1).uniform(0, 1, (3, 13, 13, 3)).astype(np.float32)
    expected = model(x, training=False).numpy()
    got = keras_layout_forward(weights, x)
    assert got.shape == (3, 5)
    assert np.abs(got - expected).max() < 1e-4


def test_numpy_model_depends_on_the_flatten_order(tf):
    # A permuted fc1 kernel must change the output, or the reference could not catch a flatten mistake.
    model = keras_twin(**SIZES)
    weights = _random_keras_weights(model, seed=2)
    x = np.random.default_rng(3).uniform(0, 1, (2, 13, 13, 3))
    shuffled = dict(weights, fc1=[weights["fc1"][0][::-1].copy(), weights["fc1"][1]])
    assert np.abs(keras_layout_forward(weights, x) - keras_layout_forward(shuffled, x)).max() > 1e-3


def test_load_into_keras_names_the_layer_on_a_shape_mistake(tf):
    model = keras_twin(**SIZES)
    weights = _random_keras_weights(model)
    with pytest.raises(CvcourseError, match="conv1"):
        load_into_keras(model, dict(weights, conv1=[np.zeros((4, 3, 3, 3), np.float32)]))
    with pytest.raises(CvcourseError, match="no layer"):
        load_into_keras(model, {"dense": weights["fc2"]})
    load_into_keras(model, weights)
    assert np.array_equal(model.get_layer("fc2").get_weights()[0], weights["fc2"][0])


def test_fresh_process_threads_and_torch_export_after_tensorflow(tf):
    """In a fresh process (where import order and thread pools are decided): the first call's thread
    count sticks although keras_twin imports again; and torch.export still works after TensorFlow, which
    crashed with a segmentation fault when TensorFlow was loaded before Triton (import_tensorflow
    preloads Triton to prevent it)."""
    script = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)
        from cvcourse.frameworks import import_tensorflow, keras_twin
        tf, message = import_tensorflow(threads=1)
        assert tf is not None, message
        keras_twin(width=2, image_size=8, hidden=3)
        threads = tf.config.threading.get_intra_op_parallelism_threads()
        assert threads == 1, f"keras_twin changed TensorFlow's threads to {threads}"
        ep = torch.export.export(torch.nn.ReLU(), (torch.randn(2, 3),))
        print("exported", len(list(ep.graph.nodes)))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exported" in result.stdout
