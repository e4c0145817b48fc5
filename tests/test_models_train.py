"""cvcourse.models, cvcourse.train, cvcourse.pretrained: shapes, a real fit, and real ImageNet weights."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from cvcourse import data, models, pretrained, train
from cvcourse.errors import CvcourseError


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
    assert len(history.train_loss) == len(history.val_accuracy) == len(history.seconds) == 4
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
