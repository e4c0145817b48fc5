"""Tests of cvcourse.detection: data in memory, the training loop, class offsets, mAP and drawing."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.ops import batched_nms, box_iou, nms  # noqa: E402

from cvcourse.data import ShapeScenes  # noqa: E402
from cvcourse.detection import (  # noqa: E402
    draw_detections, fit_detector, materialize, mean_average_precision, offset_by_class, predict_dense,
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
