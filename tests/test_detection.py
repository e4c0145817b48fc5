"""Tests of cvcourse.detection: data in memory, the training loop, class offsets, mAP, drawing, grid detector."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.ops import batched_nms, box_iou, nms  # noqa: E402

from cvcourse.data import ShapeScenes  # noqa: E402
from cvcourse.detection import (  # noqa: E402
    GridDetector, decode_grid, draw_detections, encode_grid, fit_detector, grid_loss, materialize,
    mean_average_precision, offset_by_class, predict_dense,
)

CPU = torch.device("cpu")


def test_materialize_matches_the_dataset():
    data = ShapeScenes(5, image_size=32, seed=3)
    images, targets = materialize(data, progress=False)
    assert images.shape == (5, 3, 32, 32)
    for i in range(5):
        image, target = data[i]
        assert torch.equal(images[i], image)
        assert torch.equal(targets[i]["boxes"], target["boxes"]) and torch.equal(targets[i]["labels"], target["labels"])
        assert set(targets[i]) == {"boxes", "labels"}


def test_materialize_rejects_an_empty_dataset():
    with pytest.raises(ValueError):
        materialize(ShapeScenes(0), progress=False)


def test_offset_by_class_separates_classes_and_matches_batched_nms():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=gen) * 20
    boxes = torch.cat([xy, xy + torch.rand(40, 2, generator=gen) * 10 + 1], 1)
    labels = torch.randint(0, 3, (40,), generator=gen)
    scores = torch.rand(40, generator=gen)
    shifted = offset_by_class(boxes, labels)
    iou = box_iou(shifted, shifted)
    assert (iou[labels[:, None] != labels[None, :]] == 0).all()
    same = labels[:, None] == labels[None, :]
    assert torch.allclose(iou[same], box_iou(boxes, boxes)[same], atol=1e-5)
    assert torch.equal(nms(shifted, scores, 0.5), batched_nms(boxes, scores, labels, 0.5))
    assert offset_by_class(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).shape == (0, 4)


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def test_mean_average_precision_perfect_and_half_recall():
    targets = [_target([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])]
    perfect = [{**targets[0], "scores": torch.tensor([0.9, 0.8])}]
    result = mean_average_precision(perfect, targets, class_metrics=True)
    assert result["map_50"] == pytest.approx(1.0) and result["map"] == pytest.approx(1.0)
    assert result["map_per_class"] == pytest.approx([1.0, 1.0])
    # one class, two true boxes, one found: precision 1 up to recall 0.5, so 51 of the 101 levels count
    targets = [_target([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    half = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([0])}]
    assert mean_average_precision(half, targets)["map_50"] == pytest.approx(51 / 101, abs=1e-6)


def test_predict_dense_is_the_eval_mode_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    x = torch.rand(7, 3, 8, 8)
    out = predict_dense(model, x, batch_size=3, device=CPU)
    model.eval()
    assert torch.allclose(out, model(x), atol=1e-6)


def test_fit_detector_learns_and_is_seeded():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, 8, 8, generator=gen)
    y = x.mean(1, keepdim=True) * 2 - 1                    # a per-pixel target a 1x1 conv can represent

    def run():
        torch.manual_seed(0)
        model = nn.Conv2d(3, 1, 1)
        losses = fit_detector(model, nn.functional.mse_loss, x, y, epochs=15, batch_size=16, lr=5e-2,
                              device=CPU, progress=False)
        return model, losses

    model, losses = run()
    assert len(losses) == 15 and losses[-1] < 0.2 * losses[0]
    _, again = run()
    assert losses == again

    seen = []
    fit_detector(nn.Conv2d(3, 1, 1), nn.functional.mse_loss, x, y, epochs=1, batch_size=16, device=CPU,
                 progress=False, augment=lambda a, b, g: (seen.append(len(a)) or a, b))
    assert seen == [16, 16, 16, 16]


def test_draw_detections_draws_true_and_confident_boxes():
    image = torch.rand(3, 32, 32)
    target = _target([[1, 1, 10, 10]], [0])
    prediction = {"boxes": torch.tensor([[1.0, 1, 10, 10], [5, 5, 20, 20]]), "scores": torch.tensor([0.9, 0.1]),
                  "labels": torch.tensor([0, 1])}
    fig, ax = plt.subplots()
    draw_detections(ax, image, prediction, target, names=("a", "b"), score_threshold=0.5, title="t")
    assert len(ax.patches) == 2                             # one true box and the one prediction above 0.5
    plt.close(fig)


def _perfect_outputs(encoded: torch.Tensor, num_classes: int, confidence: float = 20.0) -> torch.Tensor:
    """Outputs (B, 5 + C, S, S) whose decoding is exactly the encoded targets (B, S, S, 6)."""
    b, s = encoded.shape[:2]
    out = torch.full((b, s, s, 5 + num_classes), -confidence)
    out[..., 1:5] = torch.logit(encoded[..., 1:5].clamp(1e-6, 1 - 1e-6), eps=1e-6)
    present = encoded[..., 0] > 0
    out[..., 0][present] = confidence
    out[present, 5 + encoded[present][:, 5].long()] = confidence
    return out.permute(0, 3, 1, 2)


def test_encode_grid_by_hand():
    boxes = [torch.tensor([[8.0, 8.0, 24.0, 16.0], [0.0, 20.0, 6.0, 32.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.long)]
    encoded = encode_grid(boxes, labels, image_size=32, stride=8)
    assert encoded.shape == (2, 4, 4, 6)
    assert encoded[0, 1, 2].tolist() == [1.0, 0.0, 0.5, 0.5, 0.25, 2.0]     # centre (16, 12): row 1, column 2
    assert encoded[0, 3, 0].tolist() == [1.0, 0.375, 0.25, 6 / 32, 12 / 32, 0.0]
    assert encoded[0, ..., 0].sum() == 2 and encoded[1].abs().sum() == 0


def test_decode_grid_inverts_encode_grid_and_the_loss_is_low_there():
    scenes = ShapeScenes(4, image_size=32, max_objects=2, seed=5)
    targets = [scenes[i][1] for i in range(4)]
    encoded = encode_grid([t["boxes"] for t in targets], [t["labels"] for t in targets], image_size=32)
    perfect = _perfect_outputs(encoded, 3)
    for decoded, target in zip(decode_grid(perfect, image_size=32, min_score=0.5), targets):
        order = decoded["boxes"][:, 0].argsort()
        truth = target["boxes"][:, 0].argsort()
        assert torch.allclose(decoded["boxes"][order], target["boxes"][truth], atol=1e-3)
        assert torch.equal(decoded["labels"][order], target["labels"][truth])
        assert (decoded["scores"] > 0.99).all()
    assert grid_loss(perfect, encoded) < 1e-3
    wrong_class = perfect.clone()
    wrong_class[:, 5:] = wrong_class[:, 5:].roll(1, dims=1)
    assert grid_loss(wrong_class, encoded) > 10


def test_grid_detector_shape():
    assert GridDetector(num_classes=3, width=4)(torch.rand(2, 3, 32, 32)).shape == (2, 8, 4, 4)
