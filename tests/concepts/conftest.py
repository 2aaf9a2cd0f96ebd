"""Fixtures for the concept tests: a tiny CNN with a ResNet-like tail and planted NMF data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> ReLU features ``(N, 16, S/4, S/4)``, then avgpool -> fc (torchvision names)."""

    def __init__(self, num_classes: int = 4, channels: int = 16, negative: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.layer4 = nn.Conv2d(8, channels, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.negative = negative

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.layer4(self.relu(self.conv1(x)))
        return f if self.negative else self.relu(f)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(f), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small matrices: one intra-op thread is fastest, and immune to a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_net() -> TinyNet:
    gen = torch.Generator().manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return net.eval()


@pytest.fixture
def tiny_split(tiny_net):
    from concepts import split_model
    return split_model(tiny_net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32,
                       categories=["cat", "dog", "car", "hot dog"], model_id="tiny")


@pytest.fixture
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(6, 3, 32, 32, generator=gen)


def planted(n: int = 400, c: int = 60, k: int = 5, noise: float = 0.01, seed: int = 0):
    """``A = U W + noise`` with sparse-ish non-negative ``U (n, k)``, ``W (k, c)``."""
    rng = np.random.default_rng(seed)
    U = rng.random((n, k)) ** 4
    W = rng.random((k, c)) ** 4
    A = U @ W + noise * rng.random((n, c))
    return A, U, W


@pytest.fixture
def make_planted():
    """The :func:`planted` factory, as a fixture."""
    return planted
