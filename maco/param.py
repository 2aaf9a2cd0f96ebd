"""Image parameterizations: what the optimiser changes, and how it becomes an image.

Notation: ``T`` targets (one image each), canvas ``H x W``, ``W' = W // 2 + 1``.
Every parameterization is an ``nn.Module`` whose ``forward()`` returns
``(T, 3, H, W)`` RGB in ``[0, 1]``; what is optimised is an ``nn.Parameter``,
what is fixed is a buffer, so ``.to(device)`` moves everything.

- :class:`MacoImage` (Fel et al. 2023): only the Fourier phase is optimised;
  the magnitude is a fixed natural-image spectrum.
- :class:`FourierImage` (Olah et al. 2017): the whole spectrum, preconditioned
  by ``1 / f^decay``.
- :class:`PixelImage`: plain pixels, the naive baseline.

All three re-correlate colours with the same matrix and squash with a sigmoid.
Each target draws its initial values from its own generator, so a target gets
the same image whether it is optimised alone or in a batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = ["COLOR_CORRELATION", "FourierImage", "MacoImage", "PHASE_INITS", "PixelImage"]

# Lucid's colour correlation (ImageNet RGB covariance square root), divided by
# its largest column norm; images are built in the decorrelated basis and
# mapped to RGB with ``x @ COLOR_CORRELATION``.
_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = (_CORRELATION / _CORRELATION.norm(dim=0).max()).T.contiguous()

PHASE_INITS = ("offset", "reference", "uniform")


def _generators(n_targets: int, generators: Sequence[torch.Generator] | None) -> list[torch.Generator | None]:
    if generators is None:
        return [None] * n_targets
    if len(generators) != n_targets:
        raise ValueError(f"`generators` must hold one generator per target ({n_targets}); got {len(generators)}.")
    return list(generators)


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std over all but the first (target) axis."""
    dims = tuple(range(1, x.ndim))
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True, unbiased=False) + 1e-5)


def _to_rgb(decorrelated: torch.Tensor, correlation: torch.Tensor) -> torch.Tensor:
    """Re-correlate colours and squash: ``(T, 3, H, W)`` -> RGB in [0, 1]."""
    rgb = torch.einsum("tchw,cd->tdhw", decorrelated, correlation.to(decorrelated.dtype))
    return torch.sigmoid(rgb)


class MacoImage(nn.Module):
    """Phase-only parameterization with a fixed magnitude spectrum (MaCo).

    Parameters
    ----------
    magnitude : torch.Tensor
        ``(3, H, W')`` fixed magnitude (see :mod:`maco.spectrum`), Hermitian
        consistent in its first and last columns.
    n_targets : int
        ``T``, the number of images optimised together.
    phase_init : {"offset", "reference", "uniform"}
        ``"reference"`` draws N(0, 1) phases and re-standardises them at every
        step, as xplique and Horama do; this leaves a coherent bright spot in
        the corners (``mean(cos phase) >= 0.5``). ``"offset"`` (default) does
        the same and adds one fixed uniform random phase per frequency after
        the standardisation, which scatters that coherent part (DESIGN.md
        section 4: same recognisability as the reference, ~10x less corner
        energy; our own measurement is in BENCHMARKS.md). ``"uniform"`` draws
        U(-pi, pi) phases and never standardises.
    generators : sequence of torch.Generator, optional
        One CPU generator per target for the initial phase.

    Notes
    -----
    The phase of the first and last ``rfft2`` columns is made antisymmetric
    (``phi[-k] = -phi[k]``), so ``irfft2`` does not have to drop a
    non-Hermitian part: the realised magnitude equals the fixed one exactly,
    up to the global scale of the final standardisation. The four
    self-conjugate bins (the DC term among them) are real in any real image:
    they take the value ``M cos(phi)``, which lets the optimiser set the mean
    colour of each channel.
    """

    def __init__(
        self,
        magnitude: torch.Tensor,
        n_targets: int = 1,
        *,
        phase_init: str = "offset",
        generators: Sequence[torch.Generator] | None = None,
    ) -> None:
        super().__init__()
        if phase_init not in PHASE_INITS:
            raise ValueError(f"`phase_init` of MacoImage must be one of {PHASE_INITS}; got {phase_init!r}.")
        if magnitude.ndim != 3 or magnitude.shape[0] != 3:
            raise ValueError(f"`magnitude` of MacoImage must have shape (3, H, W//2+1); got {tuple(magnitude.shape)}.")
        self.phase_init = phase_init
        self.height = magnitude.shape[-2]
        self.width = 2 * (magnitude.shape[-1] - 1)
        shape = tuple(magnitude.shape)
        phases, offsets = [], []
        for gen in _generators(n_targets, generators):
            if phase_init == "uniform":
                phases.append((torch.rand(shape, generator=gen) * 2 - 1) * math.pi)
            else:
                phases.append(torch.randn(shape, generator=gen))
            if phase_init == "offset":
                offsets.append((torch.rand(shape, generator=gen) * 2 - 1) * math.pi)
        self.phase = nn.Parameter(torch.stack(phases).to(magnitude.device))
        offset = torch.stack(offsets) if offsets else torch.zeros(0)
        self.register_buffer("offset", offset.to(magnitude.device), persistent=False)
        self.register_buffer("magnitude", magnitude.detach().float().clone())
        self.register_buffer("correlation", COLOR_CORRELATION.to(magnitude.device))
        rows = torch.arange(self.height, device=magnitude.device)
        self.register_buffer("negative_rows", (-rows) % self.height, persistent=False)
        self.register_buffer("self_conjugate_rows", rows == (-rows) % self.height, persistent=False)

    def effective_phase(self) -> torch.Tensor:
        """``(T, 3, H, W')`` phase after standardisation, offset and symmetry."""
        phase = self.phase
        if self.phase_init != "uniform":
            phase = _standardize(phase)
        if self.phase_init == "offset":
            phase = phase + self.offset.to(phase.dtype)
        edges = phase[..., [0, -1]]
        antisymmetric = 0.5 * (edges - edges[..., self.negative_rows, :])
        edges = torch.where(self.self_conjugate_rows[:, None], edges, antisymmetric)
        return torch.cat([edges[..., :1], phase[..., 1:-1], edges[..., 1:]], dim=-1)

    def spatial(self) -> torch.Tensor:
        """``(T, 3, H, W)`` standardised image in the decorrelated colour basis."""
        phase = self.effective_phase()
        magnitude = self.magnitude.to(phase.dtype)
        spectrum = torch.polar(magnitude.expand_as(phase), phase)
        return _standardize(torch.fft.irfft2(spectrum, s=(self.height, self.width)))

    def forward(self) -> torch.Tensor:
        return _to_rgb(self.spatial(), self.correlation)


class FourierImage(nn.Module):
    """Classic Fourier parameterization (Olah et al. 2017; Lucid's ``fft_image``).

    The real and imaginary parts of the spectrum are optimised, scaled by
    ``1 / max(f, 1 / max(H, W)) ** decay_power``; initial values N(0, sd^2).
    """

    def __init__(
        self,
        height: int,
        width: int,
        n_targets: int = 1,
        *,
        decay_power: float = 1.0,
        sd: float = 0.01,
        generators: Sequence[torch.Generator] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.height, self.width = height, width
        shape = (3, height, width // 2 + 1, 2)
        init = torch.stack([torch.randn(shape, generator=gen) * sd for gen in _generators(n_targets, generators)])
        self.spectrum = nn.Parameter(init.to(device))
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        freqs = torch.sqrt(fx**2 + fy**2)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / max(height, width)) ** decay_power
        self.register_buffer("scale", scale.to(device))
        self.register_buffer("correlation", COLOR_CORRELATION.to(device))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="ortho") / 4.0
        return _to_rgb(image, self.correlation)


class PixelImage(nn.Module):
    """Plain pixels in the decorrelated basis, initial values N(0, sd^2)."""

    def __init__(
        self,
        height: int,
        width: int,
        n_targets: int = 1,
        *,
        sd: float = 0.01,
        generators: Sequence[torch.Generator] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.height, self.width = height, width
        init = torch.stack(
            [torch.randn((3, height, width), generator=gen) * sd for gen in _generators(n_targets, generators)]
        )
        self.pixels = nn.Parameter(init.to(device))
        self.register_buffer("correlation", COLOR_CORRELATION.to(device))

    def forward(self) -> torch.Tensor:
        return _to_rgb(self.pixels, self.correlation)
