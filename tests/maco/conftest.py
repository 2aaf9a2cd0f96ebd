"""Tiny CPU models for the maco tests."""

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv-bn-relu x2 -> global pool -> linear, with ResNet-like names."""

    def __init__(self, width: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(nn.Conv2d(8, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is really tested
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()
