"""cvcourse.models, cvcourse.train, cvcourse.pretrained: shapes, a real fit, and real ImageNet weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cvcourse import data, models, pretrained, train
from cvcourse.errors import CvcourseError

CPU = torch.device("cpu")


@pytest.mark.parametrize("side", [8, 28, 33])
def test_small_cnn_shapes(side):
    model = models.SmallCNN(in_channels=1, num_classes=7, width=4)
    x = torch.randn(2, 1, side, side)
    assert model(x).shape == (2, 7) and model.embed(x).shape == (2, 16)


def test_small_resnet_shapes():
    model = models.SmallResNet(in_channels=3, num_classes=5, width=4, blocks=2)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 5) and model.embed(x).shape == (2, 16)


def test_fit_learns_real_digits_and_records_history():
    torch.manual_seed(0)
    train_set, test_set = data.digits("train", n=600), data.digits("test", n=300)
    before = train.evaluate(models.SmallCNN(width=8), test_set, device=torch.device("cpu"))["accuracy"]
    model = models.SmallCNN(width=8)
    history = train.fit(model, train_set, epochs=4, batch_size=32, val_data=test_set,
                        device=torch.device("cpu"), progress=False)
    assert len(history.train_loss) == len(history.val_metric) == len(history.seconds) == 4
    assert history.metric == "accuracy" and history.train_metric[-1] > history.train_metric[0]
    assert history.train_loss[-1] < history.train_loss[0]
    after = train.evaluate(model, test_set, device=torch.device("cpu"))["accuracy"]
    assert after > 0.8 > before + 0.3
    assert train.predict(model, test_set, device=torch.device("cpu")).shape == (300, 10)


def test_fit_is_repeatable_with_a_seed():
    def run():
        torch.manual_seed(1)
        model = models.SmallCNN(width=4)
        return train.fit(model, data.digits("train", n=128), epochs=1, device=torch.device("cpu"), progress=False)

    assert run().train_loss == run().train_loss


def test_accuracy_is_per_example_for_labels_and_class_maps():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert train.accuracy(scores, torch.tensor([1, 1, 1])).tolist() == [1.0, 0.0, 1.0]
    dense = torch.zeros(2, 3, 2, 2)
    dense[0, 2] = 1.0                                   # image 0 says class 2 everywhere, image 1 class 0
    maps = torch.tensor([[[2, 2], [2, 0]], [[1, 1], [1, 1]]])
    assert train.accuracy(dense, maps).tolist() == [0.75, 0.0]


class FixedScores(nn.Module):
    """Scores that say class 1 where the first channel is above 0.5, else class 0."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        one = (x[:, :1] > 0.5).float()
        return torch.cat([1 - one, one], dim=1) + 0 * self.dummy


def test_evaluate_class_maps_against_hand_counts():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 5, 4, generator=gen)
    y = torch.randint(0, 2, (7, 5, 4), generator=gen)
    data, model = TensorDataset(x, y), FixedScores()
    result = train.evaluate(model, data, batch_size=3, device=CPU)      # batches of 3, 3, 1
    right = ((x[:, 0] > 0.5).long() == y).float()
    assert result["accuracy"] == pytest.approx(right.mean().item(), abs=1e-6)
    per_batch = [F.cross_entropy(model(x[i:i + 3]), y[i:i + 3]).item() * len(y[i:i + 3]) for i in (0, 3, 6)]
    assert result["loss"] == pytest.approx(sum(per_batch) / 7, abs=1e-6)
    assert list(train.evaluate(model, data, metric=None, device=CPU)) == ["loss"]


def test_evaluate_weights_a_whole_batch_score_by_its_size():
    def first_label(outputs, targets):
        return float(targets[0])                        # one score per batch

    data = TensorDataset(torch.zeros(5, 2), torch.tensor([1, 1, 1, 0, 0]))
    result = train.evaluate(nn.Identity(), data, metric=first_label, batch_size=3, device=CPU)
    assert result["first_label"] == pytest.approx(3 / 5)          # batch [1, 1, 1] counts 3 times, [0, 0] twice
    assert "metric" in train.evaluate(nn.Identity(), data, metric=lambda o, t: o.sum(1), device=CPU)


def test_fit_learns_a_pixel_rule_and_skips_frozen_parameters():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, 8, 8, generator=gen)
    data = TensorDataset(x, (x[:, 0] > x[:, 1]).long())
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 1)
    model.bias.requires_grad_(False)
    bias = model.bias.detach().clone()
    history = train.fit(model, data, epochs=15, batch_size=16, val_data=data, device=CPU, progress=False,
                        optimizer=torch.optim.Adam([model.weight], lr=0.05))
    assert len(history.train_loss) == len(history.val_loss) == len(history.val_metric) == 15
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_metric[-1] > 0.9 and all(0.0 <= a <= 1.0 for a in history.train_metric)
    assert torch.equal(model.bias.detach(), bias)


def test_fit_a_volume_model_with_a_per_example_dice():
    # A 1x1x1 convolution can learn "bright voxel = object"; the validation Dice rises.
    def dice(logits, target):
        hard = (logits > 0).float()
        return 2 * (hard * target).flatten(1).sum(1) / (hard + target).flatten(1).sum(1).clamp_min(1)

    x = torch.rand(32, 1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, (x > 0.5).float())
    model = nn.Conv3d(1, 1, 1)
    before = train.evaluate(model, data, F.binary_cross_entropy_with_logits, dice, device=CPU)["dice"]
    history = train.fit(model, data, 15, torch.optim.Adam(model.parameters(), lr=0.1),
                        F.binary_cross_entropy_with_logits, dice, batch_size=8, val_data=data, device=CPU,
                        progress=False)
    assert history.metric == "dice" and len(history.val_metric) == 15
    assert history.val_metric[-1] > max(before, 0.9)
    no_metric = train.fit(nn.Conv3d(1, 1, 1), data, 1, loss_fn=F.binary_cross_entropy_with_logits, metric=None,
                          val_data=data, device=CPU, progress=False)
    assert no_metric.train_metric == no_metric.val_metric == [] and len(no_metric.val_loss) == 1


def test_predict_gathers_postprocessed_batches():
    x = torch.rand(5, 3, 2, 2)
    out = train.predict(nn.Identity(), TensorDataset(x, torch.zeros(5)), batch_size=2, device=CPU,
                        postprocess=lambda s: s.argmax(1))
    assert torch.equal(out, x.argmax(1))


def test_mobilenet_v2_recognises_the_cat_photo():
    model = pretrained.mobilenet_v2()
    classes = pretrained.imagenet_classes()
    with torch.no_grad():
        logits = model(pretrained.imagenet_preprocess(data.photo("chelsea")[None]))
    top5 = [classes[i] for i in logits[0].topk(5).indices]
    assert any("cat" in name.lower() for name in top5), top5


def test_mobilenet_v2_new_head():
    model = pretrained.mobilenet_v2(num_classes=3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_other_torchvision_weights_say_what_they_need_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CvcourseError, match="download=True"):
        pretrained.torchvision_model("resnet18")


def test_distributed_setup_is_a_no_op_outside_torchrun(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert train.init_distributed() == (0, 1)


def test_evaluate_counts_correct_predictions():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0].long(), 3).float()

    x = torch.tensor([[0.0], [1.0], [2.0], [2.0]])
    y = torch.tensor([0, 1, 1, 2])
    assert train.evaluate(Fixed(), TensorDataset(x, y), device=torch.device("cpu"))["accuracy"] == 0.75
