"""Interactive explorers built on ipywidgets: move a slider, see the figure redraw.

Executed headless (tests, grading, the book) they draw once with the default values, so a static
page still shows a picture.
"""

from __future__ import annotations

from typing import Callable, Mapping

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from cvcourse.viz import to_display


def explorer(render: Callable[..., object], **controls):
    """Redraw ``render(**values)`` whenever a control moves.

    Each control is a ``(min, max, step)`` tuple for a slider, a list for a dropdown, or a bool for
    a checkbox, as ``ipywidgets.interact`` understands them.
    """
    try:
        import ipywidgets
    except ImportError:  # a plain Python run (a script, a bare GPU box): draw once with the defaults
        return render()
    return ipywidgets.interact(render, **controls)


def kernel_explorer(image: torch.Tensor, kernels: Mapping[str, torch.Tensor], conv: Callable = F.conv2d):
    """Pick a 2-D kernel and a stride, see the input and ``conv(image, kernel)`` side by side.

    Args:
        image: (1, H, W) grey image.
        kernels: name -> (kh, kw) kernel.
        conv: a function ``(input (1, 1, H, W), weight (1, 1, kh, kw), stride=) -> (1, 1, H', W')``,
            for example the learner's own ``conv2d``.
    """

    def render(kernel: str = next(iter(kernels)), stride: int = 1):
        weight = kernels[kernel].float()[None, None]
        response = conv(image[None].float(), weight.to(image.device), stride=stride)[0, 0].detach().cpu()
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), gridspec_kw={"width_ratios": [4, 1.2, 4]})
        axes[0].imshow(to_display(image), cmap="gray")
        axes[0].set_title(f"input {tuple(image.shape[-2:])}")
        axes[1].imshow(weight[0, 0].numpy(), cmap="coolwarm")
        axes[1].set_title(kernel)
        axes[2].imshow(response.numpy(), cmap="magma")
        axes[2].set_title(f"response {tuple(response.shape)}")
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        plt.show()

    return explorer(render, kernel=list(kernels), stride=(1, 4, 1))
