"""Small backbones used as infrastructure by many notebooks. Graded components never live here."""

from __future__ import annotations

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int, pool: bool = True) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU, then an optional 2x2 max-pool: (B, C_in, H, W) -> (B, C_out, H', W')."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Three conv blocks of width w, 2w, 4w, global average pooling and a linear classifier.

    ``features(x)`` gives (B, 4w, H/8, W/8) maps; ``embed(x)`` the pooled (B, 4w) vector; ``forward``
    the (B, num_classes) logits. Works for any input side of 8 pixels or more.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, width),
            conv_block(width, 2 * width),
            conv_block(2 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; a 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet with a 3x3 stem and three stages (w, 2w, 4w) of ``blocks`` basic blocks each.

    Stages two and three halve the resolution. ``embed(x)`` gives (B, 4w); ``forward`` the logits.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16, blocks: int = 1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, channels = [], width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

