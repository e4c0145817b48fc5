import torch
from torch.utils.data import DataLoader, TensorDataset

from cvcourse.augment import Augmented, uniform


def _noise(image, generator):
    return image + torch.randn(image.shape, generator=generator)


def test_augmented_applies_transform_and_keeps_labels():
    data = TensorDataset(torch.zeros(5, 1, 4, 4), torch.arange(5))
    aug = Augmented(data, lambda x, g: x + 3.0)
    assert len(aug) == 5
    image, label = aug[2]
    assert torch.equal(image, torch.full((1, 4, 4), 3.0)) and int(label) == 2


def test_augmented_redraws_every_read_and_is_reproducible():
    data = TensorDataset(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))
    aug = Augmented(data, _noise, seed=7)
    first, second = aug[0][0], aug[0][0]
    assert not torch.equal(first, second)  # a new draw each time
    # The same stream as a generator seeded by hand, drawn in the same order.
    g = torch.Generator().manual_seed(7)
    expected = [torch.randn((1, 2, 2), generator=g) for _ in range(2)]
    assert torch.equal(first, expected[0]) and torch.equal(second, expected[1])
    aug.reseed()
    assert torch.equal(aug[0][0], expected[0])
    aug.reseed(8)
    assert torch.equal(aug[0][0], torch.randn((1, 2, 2), generator=torch.Generator().manual_seed(8)))


def test_augmented_in_a_dataloader_batches():
    data = TensorDataset(torch.ones(6, 1, 3, 3), torch.arange(6))
    x, y = next(iter(DataLoader(Augmented(data, lambda im, g: im * 2), batch_size=4)))
    assert x.shape == (4, 1, 3, 3) and torch.equal(x, torch.full((4, 1, 3, 3), 2.0))
    assert y.tolist() == [0, 1, 2, 3]


def test_uniform_in_range_and_seeded():
    g = torch.Generator().manual_seed(0)
    draws = [uniform(-2.0, 5.0, g) for _ in range(500)]
    assert all(-2.0 <= d <= 5.0 for d in draws)
    assert abs(sum(draws) / len(draws) - 1.5) < 0.4
    assert uniform(0, 1, torch.Generator().manual_seed(3)) == uniform(0, 1, torch.Generator().manual_seed(3))


def test_fit_mixed_learns_and_uses_soft_targets():
    from cvcourse.augment import fit_mixed

    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).long()
    data = TensorDataset(x, y)
    model = torch.nn.Linear(2, 2)
    seen = []

    def halve(images, labels):  # soft targets 0.75 / 0.25: a transform that only changes the targets
        seen.append(len(labels))
        one_hot = torch.nn.functional.one_hot(labels, 2).float()
        return images, 0.5 * one_hot + 0.25

    losses = fit_mixed(model, data, steps=30, batch_transform=halve, num_classes=2, batch_size=16, lr=0.05,
                       device=torch.device("cpu"), progress=False)
    assert len(losses) == 30 and len(seen) == 30 and set(seen) == {16}  # 4 batches per pass, passes repeat
    assert losses[-1] < losses[0]
    accuracy = ((model(x).argmax(1)) == y).float().mean()
    assert accuracy > 0.9
    # The optimum of cross-entropy against 0.75/0.25 targets predicts 0.75, not 1: soft targets were used.
    p = torch.softmax(model(x), 1).max(1).values
    assert p.mean() < 0.9


def test_fit_mixed_without_transform_matches_plain_cross_entropy():
    from cvcourse.augment import fit_mixed

    x, y = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    b.load_state_dict(a.state_dict())
    fit_mixed(a, TensorDataset(x, y), steps=1, batch_transform=None, num_classes=3, batch_size=8, lr=0.1,
              device=torch.device("cpu"), progress=False)
    opt = torch.optim.Adam(b.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(b(x), y).backward()  # one full batch: order does not matter for the mean
    opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)
