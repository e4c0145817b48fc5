"""cvcourse.subsets: class-aware subsets are exact, seeded, and drawn from the dataset itself."""

import collections

import pytest
import torch
from torch.utils.data import TensorDataset

from cvcourse.data import digits
from cvcourse.errors import CvcourseError
from cvcourse.subsets import class_counts, imbalanced, imbalanced_counts, per_class, take


def _rows(dataset):
    """Each example as a hashable (image bytes, label) pair, to check a subset's rows are the dataset's."""
    images, labels = dataset.tensors
    return [(images[i].numpy().tobytes(), int(labels[i])) for i in range(len(labels))]


def test_per_class_takes_k_of_every_class_from_the_dataset():
    full = digits("train")
    few = per_class(full, 7, seed=3)
    assert collections.Counter(int(y) for y in few.tensors[1]) == {c: 7 for c in range(10)}
    assert set(_rows(few)) <= set(_rows(full))
    assert len(set(_rows(few))) == 70  # no example twice


def test_subsets_are_seeded():
    full = digits("train")
    assert torch.equal(per_class(full, 5, seed=1).tensors[0], per_class(full, 5, seed=1).tensors[0])
    assert not torch.equal(per_class(full, 5, seed=1).tensors[0], per_class(full, 5, seed=2).tensors[0])


def test_exponential_counts_follow_the_long_tail():
    # Worked by hand: 100 * 100 ** (-c / 2) for c = 0, 1, 2 is 100, 10, 1.
    assert imbalanced_counts(100, 3, 100) == [100, 10, 1]
    counts = imbalanced_counts(1000, 10, 100)
    assert counts[0] == 1000 and counts[-1] == 10
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_step_counts_split_majority_and_minority():
    assert imbalanced_counts(50, 4, 50, profile="step") == [50, 50, 1, 1]
    assert imbalanced_counts(100, 3, 10, profile="step", n_minority=1) == [100, 100, 10]


def test_imbalanced_subset_has_the_asked_class_sizes():
    full = digits("train")
    long_tail = imbalanced(full, ratio=10, n_max=100, seed=0)
    by_hand = collections.Counter(int(y) for y in long_tail.tensors[1])
    assert [by_hand[c] for c in range(10)] == imbalanced_counts(100, 10, 10)
    assert class_counts(long_tail).tolist() == [by_hand[c] for c in range(10)]


def test_take_keeps_rows_in_the_given_order():
    data = TensorDataset(torch.arange(10.0).unsqueeze(1), torch.arange(10) % 2)
    picked = take(data, torch.tensor([7, 2, 5]))
    assert picked.tensors[0].squeeze(1).tolist() == [7.0, 2.0, 5.0]
    assert picked.tensors[1].tolist() == [1, 0, 1]


def test_bad_requests_raise_one_clear_error():
    full = digits("train", n=100)
    with pytest.raises(CvcourseError, match="examples"):
        per_class(full, 1000)
    with pytest.raises(CvcourseError, match="profile"):
        imbalanced_counts(10, 3, 5, profile="linear")
    with pytest.raises(CvcourseError, match="TensorDataset"):
        class_counts([(torch.zeros(1), 0)])
