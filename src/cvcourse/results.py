"""Headline results: shown to the reader and recorded in the cell output's metadata.

``cvcourse report`` and the book read the metadata, so no tool ever parses a notebook's prose.
"""

from __future__ import annotations

from cvcourse.runtime import profile as current_profile

METADATA_KEY = "cvcourse"


class Headline(dict):
    """The record of one headline number; a notebook cell that ends with ``headline(...)`` shows it once."""

    def _ipython_display_(self) -> None:
        pass  # already displayed, with its metadata, when it was recorded


def headline(
    name: str,
    value: float,
    target: float | None = None,
    higher_is_better: bool = True,
    unit: str = "",
    baseline: float | None = None,
    baseline_name: str = "baseline",
) -> Headline:
    """Show ``name = value`` (with a baseline and a target if given) and record it machine-readably.

    The target is the number the ``cpu`` and ``gpu`` profiles must reach; the tiny ``ci`` profile only
    records the value. Returns the record that was attached to the output.
    """
    run_profile = current_profile().name
    met = None
    if target is not None and run_profile != "ci":
        met = bool(value >= target if higher_is_better else value <= target)  # numpy bools are not JSON
    record = Headline({
        "name": name, "value": float(value), "target": target, "higher_is_better": higher_is_better, "unit": unit,
        "baseline": None if baseline is None else float(baseline), "baseline_name": baseline_name,
        "profile": run_profile, "met": met,
    })
    text = f"**{name}: {value:.4g}{unit}**"
    if baseline is not None:
        text += f" ({baseline_name}: {baseline:.4g}{unit})"
    if target is not None:
        direction = "\u2265" if higher_is_better else "\u2264"
        verdict = {True: "reached", False: "missed", None: "not judged in the ci profile"}[met]
        text += f"; target {direction} {target:.4g}{unit}: {verdict}"
    try:
        from IPython.display import Markdown, display

        display(Markdown(text), metadata={METADATA_KEY: {"headline": record}})
    except ImportError:  # plain Python: the printed line is all there is to show
        print(text.replace("**", ""))
    return record
