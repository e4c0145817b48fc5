"""Two frameworks side by side: a quiet, optional TensorFlow import and one small CNN in PyTorch and Keras.

Notebooks 13 (PyTorch vs TensorFlow) and 30 (framework ecosystems) build the same network in both
frameworks. This module holds only the *architectures* (which layers, in which order, with which
hyper-parameters) and the plumbing around TensorFlow; moving weights from one framework to the other is
what the learner writes, so it is not here.

TensorFlow is optional at run time: :func:`import_tensorflow` returns ``(None, message)`` when it cannot
be imported (or when ``CVCOURSE_TENSORFLOW=0`` asks to run without it), and the PyTorch parts of the
notebooks run on their own. :func:`keras_layout_forward` computes what the Keras twin computes, in
NumPy, so a notebook can check Keras-layout weights even without TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import ModuleType

import numpy as np
import torch
from torch import nn

from cvcourse.errors import CvcourseError

TENSORFLOW_ENV = "CVCOURSE_TENSORFLOW"
INSTALL_HINT = ("TensorFlow is not available: run `pip install 'tensorflow-cpu>=2.21,<2.22'` (or `make setup`) "
                "and restart the kernel; the PyTorch parts run without it.")
BN_EPS = 1e-5  # PyTorch's BatchNorm2d default; Keras' default is 1e-3, so the twin sets it explicitly
LAYERS = ("conv1", "bn1", "conv2", "fc1", "fc2")  # the layers with weights, named alike in both frameworks
_threads_configured = False  # set by the first import_tensorflow call that imports TensorFlow


def _preload_triton() -> None:
    """Load Triton's native library before TensorFlow's, if Triton is installed.

    Both bundle LLVM; when TensorFlow is loaded first, the later import of ``triton._C.libtriton`` (which
    ``torch.export`` and ``torch.compile`` trigger through ``torch._dynamo``) crashes the process with a
    segmentation fault. Loaded in this order, both work.
    """
    try:
        importlib.import_module("triton._C.libtriton")
    except Exception:  # noqa: BLE001 (no Triton, or a Triton without the library: nothing to protect)
        pass


def import_tensorflow(threads: int | None = None) -> tuple[ModuleType | None, str]:
    """Import TensorFlow quietly; return ``(tensorflow, description)`` or ``(None, how to install it)``.

    Silences TensorFlow's C++ start-up log (``TF_CPP_MIN_LOG_LEVEL``, unless already set) and Python
    warnings during the import, selects the TensorFlow backend for Keras 3 (unless ``KERAS_BACKEND`` is
    set), and limits TensorFlow to ``threads`` intra-op threads (default: as many as torch uses) and one
    inter-op thread, so the two frameworks do not fight over a small machine's cores. Only the first
    call in a process sizes the thread pools (TensorFlow fixes them when it first runs an operation);
    later calls, including the one inside :func:`keras_twin`, keep that choice.
    ``CVCOURSE_TENSORFLOW=0`` makes it behave as if TensorFlow were not installed.
    The message is one line. Import TensorFlow through this function, not directly, before anything
    that uses ``torch._dynamo`` (see ``_preload_triton``).
    """
    if os.environ.get(TENSORFLOW_ENV, "").strip().lower() in {"0", "no", "off", "false"}:
        return None, INSTALL_HINT.replace("not available", f"switched off ({TENSORFLOW_ENV}=0)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        _preload_triton()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tensorflow as tf
            import keras
    except Exception as error:  # noqa: BLE001 (ImportError, or a broken install raising anything at import)
        return None, INSTALL_HINT.replace("not available", f"not available ({type(error).__name__})")
    tf.get_logger().setLevel("ERROR")
    global _threads_configured
    if not _threads_configured:  # the first call decides; later calls (keras_twin's) keep its choice
        _threads_configured = True
        threads = max(1, int(threads or torch.get_num_threads()))
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already ran something: its pools exist and cannot be resized
            pass
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    return tf, (f"TensorFlow {tf.__version__} with Keras {keras.__version__} ({keras.backend.backend()} backend), "
                f"{intra or 'default'} intra-op thread(s)")


def feature_shape(width: int, image_size: int) -> tuple[int, int, int]:
    """(C, H, W) of the twin CNN's last feature map, the input of its flatten: (2w, s//2//2, s//2//2)."""
    side = image_size // 2 // 2
    if side < 1:
        raise CvcourseError(f"image_size must be at least 4 pixels for two 2x2 poolings, got {image_size}")
    return 2 * width, side, side


class TwinCNN(nn.Module):
    """The PyTorch half of the twin CNN; input (B, C, s, s), output logits (B, num_classes).

    conv1 (3x3, ``width`` channels, padding 1, no bias) -> bn1 -> ReLU -> 2x2 max-pool ->
    conv2 (3x3, 2 ``width``, padding 1, with bias) -> ReLU -> 2x2 max-pool -> flatten (C, H, W order) ->
    fc1 (``hidden``) -> ReLU -> fc2 (``num_classes``). ``feature_shape`` is the (C, H, W) that is flattened.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8, image_size: int = 28,
                 hidden: int = 64):
        super().__init__()
        self.feature_shape = feature_shape(width, image_size)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS, momentum=0.1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(int(np.prod(self.feature_shape)), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, s, s) -> the (B, 2w, s//4, s//4) map that ``forward`` flattens."""
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        return self.pool(torch.relu(self.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.features(x).flatten(1))))


def keras_twin(in_channels: int = 1, num_classes: int = 10, width: int = 8, image_size: int = 28,
               hidden: int = 64):
    """The Keras half of the twin CNN: input (B, s, s, C) channels-last, output logits (B, num_classes).

    The same layers as :class:`TwinCNN`, named alike (``conv1``, ``bn1``, ``conv2``, ``fc1``, ``fc2``),
    with the hyper-parameters set to PyTorch's where Keras' defaults differ: batch-norm epsilon 1e-5
    (Keras: 1e-3) and momentum 0.9 (Keras keeps 1 - PyTorch's 0.1 of the old statistics). "same" padding
    equals PyTorch's padding 1 for these 3x3, stride-1 convolutions. Raises ``CvcourseError`` without
    TensorFlow.
    """
    tf, message = import_tensorflow()
    if tf is None:
        raise CvcourseError(message)
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, in_channels), name="image")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPS, momentum=0.9, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)  # flattens (H, W, C) in row-major order: channels vary fastest
    x = layers.Dense(hidden, name="fc1")(x)
    x = layers.ReLU(name="relu3")(x)
    outputs = layers.Dense(num_classes, name="fc2")(x)
    return keras.Model(inputs, outputs, name="twin_cnn")


def load_into_keras(model, weights: dict[str, list[np.ndarray]]) -> None:
    """Set the Keras twin's weights from ``{layer name: [arrays in Keras' get_weights() order]}``.

    Raises ``CvcourseError`` naming the layer when a name is unknown or a shape differs.
    """
    names = {layer.name for layer in model.layers}
    for name, arrays in weights.items():
        if name not in names:
            raise CvcourseError(f"the Keras model has no layer {name!r}; its layers with weights are {list(LAYERS)}")
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        given = [tuple(np.shape(a)) for a in arrays]
        if expected != given:
            raise CvcourseError(f"layer {name!r} expects arrays of shapes {expected}, got {given}")
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in arrays])


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Stride-1 'same' cross-correlation of (B, H, W, C) with an odd (kh, kw, C, O) kernel -> (B, H, W, O)."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[3]), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,co->bhwo", padded[:, i:i + height, j:j + width, :], kernel[i, j])
    return out


def _max_pool2(x: np.ndarray) -> np.ndarray:
    """2x2, stride-2 max-pool of (B, H, W, C), dropping an odd last row or column (floor), like both frameworks."""
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def keras_layout_forward(weights: dict[str, list[np.ndarray]], images_nhwc: np.ndarray) -> np.ndarray:
    """What the Keras twin computes in inference mode, in float64 NumPy: (B, s, s, C) -> logits (B, classes).

    ``weights`` maps the layer names to arrays in Keras' layout and order: conv1 ``[kernel (3, 3, C, w)]``,
    bn1 ``[gamma, beta, moving_mean, moving_variance]`` (each (w,)), conv2 ``[kernel (3, 3, w, 2w), bias]``,
    fc1 ``[kernel (H*W*2w, hidden), bias]``, fc2 ``[kernel (hidden, classes), bias]``; the flatten before
    fc1 reads the (H, W, C) map in row-major order. A stand-in for Keras when TensorFlow is missing.
    """
    w = {name: [np.asarray(a, dtype=np.float64) for a in arrays] for name, arrays in weights.items()}
    x = np.asarray(images_nhwc, dtype=np.float64)
    x = _conv_same(x, w["conv1"][0])
    gamma, beta, mean, var = w["bn1"]
    x = (x - mean) / np.sqrt(var + BN_EPS) * gamma + beta
    x = _max_pool2(np.maximum(x, 0))
    x = _max_pool2(np.maximum(_conv_same(x, w["conv2"][0]) + w["conv2"][1], 0))
    x = x.reshape(len(x), -1)
    x = np.maximum(x @ w["fc1"][0] + w["fc1"][1], 0)
    return x @ w["fc2"][0] + w["fc2"][1]
