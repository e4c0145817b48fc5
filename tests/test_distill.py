"""cvcourse.distill: the teacher-student plumbing of notebooks 10 and 27."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import cvcourse.distill as distill
from cvcourse.distill import accuracy, fit_student, logits_of, mlp_student, parameter_count, stage_outputs, train_teacher
from cvcourse.models import SmallCNN


def test_mlp_student_shape_and_size():
    model = mlp_student(64, 16, 10)
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert parameter_count(model) == 64 * 16 + 16 + 16 * 10 + 10


def test_parameter_count_skips_frozen_weights():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    assert parameter_count(model) == 6


def test_logits_of_matches_eval_forward_and_restores_mode():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 4)
    x = torch.rand(7, 1, 8, 8)
    model.train()
    out = logits_of(model, x, batch_size=3)  # batches of 3, 3, 1
    assert model.training
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out, model(x), atol=1e-6)
    assert not out.requires_grad


def test_accuracy_counts_argmax_hits():
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))  # the logits are the inputs
    x = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    assert accuracy(model, x, torch.tensor([0, 1, 0, 2])) == pytest.approx(0.5)


def test_accuracy_runs_a_model_without_parameters():
    # A converted int8 model keeps packed weights, not parameters (notebook 28).
    model = nn.Softmax(dim=1)
    x = torch.tensor([[2.0, 0, 0], [0, 0, 3.0]])
    assert accuracy(model, x, torch.tensor([0, 1])) == pytest.approx(0.5)


def test_stage_outputs_are_the_feature_blocks():
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 4).eval()
    x = torch.rand(2, 1, 16, 16)
    maps = stage_outputs(model, x)
    assert [tuple(m.shape) for m in maps] == [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2)]
    assert torch.allclose(maps[-1], model.features(x))


def _toy(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def test_fit_student_learns_and_is_seeded():
    x, y = _toy()
    data = TensorDataset(x, y, 3 * x)
    seen = []

    def loss_fn(model, xb, yb, tb):
        assert torch.equal(tb, 3 * xb)  # the tensors of one batch stay aligned
        seen.append(len(xb))
        return F.cross_entropy(model(xb), yb)

    results = []
    for _ in range(2):
        torch.manual_seed(1)
        model = mlp_student(2, 8, 2)
        losses = fit_student(model, data, loss_fn, epochs=20, lr=1e-2, batch_size=32, seed=3, progress=False)
        results.append((losses, model[1].weight.detach().clone()))
    assert len(results[0][0]) == 20 and results[0][0][-1] < 0.5 * results[0][0][0]
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert sum(seen) == 2 * 20 * 200
    assert not model.training
    assert accuracy(model, x, y) > 0.95


def test_train_teacher_caches_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCOURSE_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g))
    first = train_teacher(data, width=4, epochs=1, progress=False)
    assert not first.training and first.classifier.out_features == 3
    assert len(list((tmp_path / "distill").glob("teacher-*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher was trained again")

    monkeypatch.setattr(distill, "fit", no_training)
    second = train_teacher(data, width=4, epochs=1, progress=False)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="trained again"):
        train_teacher(data, width=4, epochs=2, progress=False)  # another setting: another cache entry
