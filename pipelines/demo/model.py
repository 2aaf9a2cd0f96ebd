"""The demo network: a small CNN with ResNet50's tail and torchvision attribute names.

Notation: ``N`` images, ``C = 8 * width`` feature channels at ``layer4``,
``h = w = DEMO_INPUT_SIZE / 16`` its spatial size. ``forward_features`` is the
concept stage's ``g`` (image -> non-negative spatial features, post-ReLU) and
``forward_head`` its ``h`` (global average pool -> flatten -> linear), exactly
as in torchvision's ResNet50 (``layer4 -> avgpool -> fc``).

Inputs are normalised by the caller with ``DEMO_MEAN`` / ``DEMO_STD`` (the
ImageNet values), like torchvision models.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["DEMO_INPUT_SIZE", "DEMO_MEAN", "DEMO_STD", "DemoNet"]

DEMO_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
DEMO_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEMO_INPUT_SIZE: int = 128


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """conv3x3 -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DemoNet(nn.Module):
    """Small CNN: ``conv1/bn1/relu`` stem, ``layer1``..``layer4``, ``avgpool``, ``fc``.

    Channels are ``width * (1, 2, 4, 6, 8)`` for stem, layer1..layer4; strides
    2, 2, 2, 2, 1 (total stride 16: 128 px -> 8 x 8 features at ``layer4``).
    With ``width=16``: about 190 k parameters, ``C = 128``.

    Parameters
    ----------
    num_classes : int, default 6
        Outputs of ``fc``.
    width : int, default 16
        Channel multiplier.
    """

    def __init__(self, num_classes: int = 6, width: int = 16) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` of DemoNet must be a positive integer; got {value!r}.")
        c = [width * m for m in (1, 2, 4, 6, 8)]
        self.conv1 = nn.Conv2d(3, c[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(c[0], c[1], 2)
        self.layer2 = _stage(c[1], c[2], 2)
        self.layer3 = _stage(c[2], c[3], 2)
        self.layer4 = _stage(c[3], c[4], 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[4], num_classes)
        self.num_features = c[4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(N, 3, H, W)`` -> features ``(N, C, H/16, W/16)``, all >= 0."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"`x` of DemoNet must be a batch of RGB images (N, 3, H, W); got shape "
                             f"{tuple(x.shape)}. Add a batch dimension with x[None] or convert to RGB.")
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``(N, C, h, w)`` -> logits ``(N, num_classes)`` (pool, flatten, fc)."""
        return self.fc(torch.flatten(self.avgpool(features), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(N, 3, H, W)`` -> logits ``(N, num_classes)``."""
        return self.forward_head(self.forward_features(x))
