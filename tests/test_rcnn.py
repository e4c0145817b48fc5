"""Tests of cvcourse.rcnn: small torchvision Faster/Mask R-CNN, target conversion, training, prediction."""

import pytest
import torch

from cvcourse.data import ShapeScenes
from cvcourse.errors import CvcourseError
from cvcourse.rcnn import SmallFPNBackbone, build_rcnn, collate, predict_rcnn, to_targets, train_rcnn

CPU = torch.device("cpu")


def test_backbone_levels_and_strides():
    backbone = SmallFPNBackbone(width=4)
    features = backbone(torch.rand(2, 3, 32, 48))
    assert list(features) == ["0", "1", "2"]
    assert [tuple(f.shape) for f in features.values()] == [(2, 16, 16, 24), (2, 16, 8, 12), (2, 16, 4, 6)]
    assert backbone.out_channels == 16


def test_to_targets_shifts_labels_and_casts_masks():
    image, target = ShapeScenes(2, image_size=32, min_objects=2, max_objects=3, seed=4)[1]
    converted = to_targets(target)
    assert torch.equal(converted["labels"], target["labels"] + 1)
    assert converted["masks"].dtype == torch.uint8
    assert torch.equal(converted["masks"].bool(), target["masks"])
    assert torch.equal(converted["boxes"], target["boxes"])
    # the boxes of ShapeScenes cover their masks: torchvision's inclusive boxes, plus one at the max edge
    import torchvision
    assert torch.equal(converted["boxes"], torchvision.ops.masks_to_boxes(target["masks"]) + torch.tensor([0, 0, 1, 1]))
    assert "masks" not in to_targets(target, masks=False)


def test_collate_keeps_lists():
    data = ShapeScenes(3, image_size=32, seed=1)
    images, targets = collate([data[0], data[1]])
    assert isinstance(images, list) and len(images) == 2 and images[0].shape == (3, 32, 32)
    assert isinstance(targets, list) and "masks" in targets[0]


@pytest.mark.parametrize("kind", ["faster", "mask"])
def test_losses_of_each_kind(kind):
    torch.manual_seed(0)
    model = build_rcnn(num_classes=4, kind=kind, width=4, image_size=32)
    data = ShapeScenes(2, image_size=32, seed=2)
    images, targets = collate([data[0], data[1]])
    model.train()
    losses = model(images, [to_targets(t, masks=kind == "mask") for t in targets])
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    if kind == "mask":
        expected.add("loss_mask")
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())


def test_builder_rejects_bad_arguments():
    with pytest.raises(CvcourseError):
        build_rcnn(num_classes=4, kind="cascade")
    with pytest.raises(CvcourseError):
        build_rcnn(num_classes=4, backbone="resnet1000")
    with pytest.raises(CvcourseError):
        build_rcnn(num_classes=1)


def test_clipping_bounds_each_step():
    # With plain SGD at lr 1, one clipped step moves the parameters by at most the clip norm.
    torch.manual_seed(0)
    model = build_rcnn(num_classes=4, width=4, image_size=32)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    train_rcnn(model, ShapeScenes(2, image_size=32, seed=3), 1, optimizer=optimizer, batch_size=2, clip=1e-3,
               device=CPU, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 1e-3 * 1.01
    assert (after - before).norm() > 0


def test_training_reduces_the_loss_and_records_history():
    torch.manual_seed(0)
    model = build_rcnn(num_classes=4, width=4, image_size=32)
    data = ShapeScenes(8, image_size=32, seed=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = train_rcnn(model, data, 4, optimizer=optimizer, batch_size=4, device=CPU, progress=False)
    assert set(history) >= {"loss", "loss_mask", "loss_classifier"}
    assert all(len(values) == 4 for values in history.values())
    parts = sum(history[k][0] for k in history if k != "loss")
    assert history["loss"][0] == pytest.approx(parts, rel=1e-5)
    assert history["loss"][-1] < history["loss"][0]


def test_nan_loss_is_reported():
    torch.manual_seed(0)
    model = build_rcnn(num_classes=4, width=4, image_size=32)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(CvcourseError, match="loss"):
        train_rcnn(model, ShapeScenes(2, image_size=32, seed=6), 1, batch_size=2, device=CPU, progress=False)


def test_prediction_format():
    torch.manual_seed(0)
    model = build_rcnn(num_classes=4, width=4, image_size=32, detections_per_image=7)
    data = ShapeScenes(3, image_size=32, seed=7)
    results = predict_rcnn(model, data, batch_size=2, device=CPU)
    assert len(results) == 3
    for result in results:
        k = len(result["scores"])
        assert k <= 7
        assert result["boxes"].shape == (k, 4) and result["labels"].shape == (k,)
        assert result["masks"].shape == (k, 32, 32) and result["masks"].dtype == torch.bool
        assert torch.all(result["scores"][:-1] >= result["scores"][1:])
        assert torch.all((result["labels"] >= 1) & (result["labels"] <= 3))
    high = predict_rcnn(model, [data[0][0]], device=CPU, score_threshold=0.99)[0]
    assert torch.all(high["scores"] >= 0.99)
    boxes_only = build_rcnn(num_classes=4, kind="faster", width=4, image_size=32)
    assert "masks" not in predict_rcnn(boxes_only, [data[0][0]], device=CPU)[0]


def test_mobilenet_v3_backbone_without_downloads():
    torch.manual_seed(0)
    model = build_rcnn(num_classes=4, backbone="mobilenet_v3", image_size=64)
    data = ShapeScenes(2, image_size=64, seed=8)
    images, targets = collate([data[0], data[1]])
    model.train()
    losses = model(images, [to_targets(t) for t in targets])
    assert "loss_mask" in losses and all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        result = model(images[:1])[0]
    assert result["masks"].shape[1:] == (1, 64, 64)
