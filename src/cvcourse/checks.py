"""Friendly checks for the visible tests in notebooks: what was expected, what came, and a hint.

They never print a reference answer's values beyond what the visible test already shows; hidden tests
use plain assertions with short messages instead, so nothing about them reaches the learner.
"""

from __future__ import annotations

import math

import torch


class CheckFailed(AssertionError):
    """A visible test failed; the message says what differed and how to look for the mistake."""


def _fail(what: str, detail: str, hint: str | None) -> None:
    raise CheckFailed(f"{what}: {detail}" + (f"\nHint: {hint}" if hint else ""))


def passed(what: str) -> None:
    """Print a one-line success mark for ``what``."""
    print(f"\u2714 {what}")


def check_type(value, expected_type, what: str, hint: str | None = None) -> None:
    """Fail unless ``value`` is an instance of ``expected_type``."""
    if not isinstance(value, expected_type):
        names = getattr(expected_type, "__name__", str(expected_type))
        _fail(what, f"expected a {names}, got {type(value).__name__}", hint)


def check_shape(tensor, expected: tuple[int, ...], what: str, hint: str | None = None) -> None:
    """Fail unless ``tensor`` is a tensor of exactly the ``expected`` shape."""
    check_type(tensor, torch.Tensor, what, hint)
    if tuple(tensor.shape) != tuple(expected):
        _fail(what, f"expected shape {tuple(expected)}, got {tuple(tensor.shape)}", hint)


def check_close(actual, expected, what: str, atol: float = 1e-5, rtol: float = 1e-4, hint: str | None = None) -> None:
    """Fail unless ``actual`` matches ``expected`` (tensors or numbers) within tolerance.

    On a mismatch the message gives the shapes, the largest difference and where it occurs.
    """
    if not isinstance(expected, torch.Tensor):
        if not isinstance(actual, (int, float)) and not (isinstance(actual, torch.Tensor) and actual.numel() == 1):
            _fail(what, f"expected a number, got {type(actual).__name__}", hint)
        value = float(actual)
        if math.isnan(value) or not math.isclose(value, float(expected), rel_tol=rtol, abs_tol=atol):
            _fail(what, f"expected {float(expected):.6g}, got {value:.6g}", hint)
        return
    check_shape(actual, tuple(expected.shape), what, hint)
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        _fail(what, "contains NaN", hint)
    diff = (actual - expected).abs()
    bad = diff > atol + rtol * expected.abs()
    if bad.any():
        worst = int(diff.argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape))
        _fail(
            what,
            f"{int(bad.sum())} of {diff.numel()} values differ; the largest difference is "
            f"{diff.max().item():.3g} at index {index} (got {actual[index].item():.6g}, "
            f"expected {expected[index].item():.6g})",
            hint,
        )
