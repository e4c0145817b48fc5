"""The offline movie review corpus and the tokenizer of cvcourse.text."""

from collections import Counter

import pandas as pd
import pytest
import torch

from cvcourse.errors import CvcourseError
from cvcourse.text import CLASSES, corpus_path, movie_reviews, tokenize


@pytest.fixture(scope="module")
def table():
    """The corpus read independently, with pandas: fresh and rotten rows with a non-empty text."""
    frame = pd.read_csv(corpus_path())
    frame = frame[frame.category.isin(["fresh", "rotten"]) & frame.text.fillna("").str.strip().ne("")]
    return frame


@pytest.fixture(scope="module")
def splits():
    return {split: movie_reviews(split) for split in ("train", "val", "test")}


def test_the_splits_hold_every_labelled_snippet_once(table, splits):
    assert len(table) == 12808  # 7,403 fresh and 5,405 rotten snippets of 508 films
    assert sum(len(s.texts) for s in splits.values()) == len(table)
    ours = Counter((text, CLASSES[label], movie) for s in splits.values()
                   for text, label, movie in zip(s.texts, s.labels.tolist(), s.movies))
    theirs = Counter(zip(table.text.str.strip(), table.category, table.movie_name))
    assert ours == theirs


def test_labels_are_the_critics_verdicts(table, splits):
    fresh = sum(int(s.labels.sum()) for s in splits.values())
    assert fresh == (table.category == "fresh").sum() == 7403
    for s in splits.values():
        assert s.labels.dtype == torch.long and set(s.labels.unique().tolist()) == {0, 1}
        assert len(s.texts) == len(s.labels) == len(s.movies)


def test_splits_are_by_film(table, splits):
    films = {split: set(s.movies) for split, s in splits.items()}
    assert not films["train"] & films["test"] and not films["train"] & films["val"] and not films["val"] & films["test"]
    assert set().union(*films.values()) == set(table.movie_name)
    assert len(films["test"]) == round(0.2 * 508) and len(films["val"]) == round(0.1 * 508)


def test_deterministic_subsets_and_seeds(splits):
    again = movie_reviews("test")
    assert again.texts == splits["test"].texts and torch.equal(again.labels, splits["test"].labels)
    small = movie_reviews("train", n=50)
    assert len(small.texts) == 50 and small.texts == splits["train"].texts[:50]
    assert len(set(small.movies)) > 10  # a random subset, not the snippets of a few films
    other = movie_reviews("test", seed=1)
    assert set(other.movies) != set(splits["test"].movies)


def test_unknown_split_is_a_one_line_error():
    with pytest.raises(CvcourseError, match="split"):
        movie_reviews("dev")


@pytest.mark.parametrize("text, tokens", [
    ("Isn't it great?!", ["isn't", "it", "great", "?", "!"]),
    ("A three-hour cinema master class.", ["a", "three", "-", "hour", "cinema", "master", "class", "."]),
    ("The director\u2019s 2nd film", ["the", "director's", "2nd", "film"]),
    ("A clich\u00e9d, na\u00efve caf\u00e9 drama_", ["a", "clich\u00e9d", ",", "na\u00efve", "caf\u00e9", "drama", "_"]),
    ("cafe\u0301", ["caf\u00e9"]),  # a decomposed accent (e + combining acute) is composed first
    ("  ", []),
])
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens
