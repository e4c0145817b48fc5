"""cvcourse.checks, cvcourse.results, cvcourse.viz and cvcourse.widgets."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
import torch

from cvcourse import checks, data, results, viz, widgets

matplotlib.use("Agg")


def test_check_close_accepts_a_match_and_explains_a_mismatch():
    checks.check_close(torch.ones(2, 3), torch.ones(2, 3), "ones")
    with pytest.raises(checks.CheckFailed) as error:
        checks.check_close(torch.zeros(2, 3), torch.ones(2, 3), "conv2d output", hint="look at the bias")
    message = str(error.value)
    assert message.startswith("conv2d output: 6 of 6 values differ") and "Hint: look at the bias" in message


def test_check_close_reports_shape_type_and_nan():
    with pytest.raises(checks.CheckFailed, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        checks.check_close(torch.zeros(3, 2), torch.zeros(2, 3), "x")
    with pytest.raises(checks.CheckFailed, match="expected a Tensor, got list"):
        checks.check_close([0.0], torch.zeros(1), "x")
    with pytest.raises(checks.CheckFailed, match="NaN"):
        checks.check_close(torch.tensor([float("nan")]), torch.zeros(1), "x")
    with pytest.raises(checks.CheckFailed, match="expected 2, got 3"):
        checks.check_close(3.0, 2.0, "x")
    assert issubclass(checks.CheckFailed, AssertionError)


def test_headline_records_value_and_judges_only_outside_ci(monkeypatch):
    monkeypatch.setenv("CVCOURSE_PROFILE", "ci")
    assert results.headline("acc", 0.5, target=0.9)["met"] is None
    monkeypatch.setenv("CVCOURSE_PROFILE", "cpu")
    record = results.headline("acc", 0.95, target=0.9, baseline=0.7)
    assert record["met"] is True and record["baseline"] == 0.7 and record["profile"] == "cpu"
    assert results.headline("error", 0.2, target=0.1, higher_is_better=False)["met"] is False
    # numpy scalars (a mean of seeds) must give a JSON-serialisable record: the notebook stores it
    record = results.headline("acc", np.float64(0.95), target=0.9, baseline=np.float32(0.5))
    assert json.loads(json.dumps(record))["met"] is True


def test_a_cell_ending_with_headline_shows_it_once():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from cvcourse.results import headline\nheadline('accuracy', 0.95, target=0.9)")])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1, [o.get("output_type") for o in outputs]  # the Markdown, not the record's repr too
    assert "accuracy" in outputs[0]["data"]["text/markdown"] and "headline" in outputs[0]["metadata"]["cvcourse"]


def test_plots_draw_what_they_are_given():
    image, target = data.ShapeScenes(1, image_size=32, min_objects=2)[0]
    fig = viz.show_images([image, image[0]], titles=["rgb", "grey"])
    assert len([ax for ax in fig.axes if ax.images]) == 2
    fig = viz.show_feature_maps(torch.randn(5, 8, 8), n=4)
    assert len([ax for ax in fig.axes if ax.images]) == 4
    ax = viz.draw_boxes(fig.axes[0], target["boxes"], target["labels"], data.SHAPES)
    assert len(ax.patches) == len(target["boxes"])
    blended = viz.overlay_masks(image, target["masks"])
    assert blended.shape == (32, 32, 3) and not (blended == viz.to_display(image)).all()
    assert viz.show_heatmap(image, torch.rand(4, 4)).images
    ax = viz.plot_curves({"a": [1, 2], "b": [2, 1]}, ylabel="loss")
    assert len(ax.lines) == 2 and ax.get_legend() is not None


def test_to_display_rescales_out_of_range_images():
    shown = viz.to_display(torch.tensor([[[-1.0, 3.0]]]))
    assert shown.min() == 0.0 and abs(shown.max() - 1.0) < 1e-6


def test_kernel_explorer_draws_with_the_given_conv():
    calls = []

    def conv(x, w, stride=1):
        calls.append(stride)
        return torch.nn.functional.conv2d(x, w, stride=stride)

    widgets.kernel_explorer(data.photo("camera")[:, :64, :64], {"blur": torch.ones(3, 3) / 9}, conv=conv)
    assert calls == [1]
