"""One-call feature visualization: MaCo and the two classic baselines.

``maco`` keeps the seeds' call shape::

    image, alpha = maco(Objective.neuron(model, "fc", 1))
    images, alphas = maco(Objective.direction(model, "avgpool", W))  # W: (k, 2048)

All three functions share :func:`maco.render.render`; only the image
parameterization (and its learning rate) differ, so comparisons are fair.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from .model import model_device
from .objectives import Objective
from .param import PHASE_INITS, FourierImage, MacoImage, PixelImage
from .render import IMAGENET_MEAN, IMAGENET_STD, RenderResult, render, target_generators
from .spectrum import _check_even_size, _check_spectrum_shape, default_spectrum
from .transforms import _check_crop_size

__all__ = ["fourier", "maco", "pixels"]


def maco(
    objective: Objective,
    *,
    steps: int = 256,
    image_size: int = 512,
    crops: int = 32,
    crop_size: tuple[float, float] = (0.25, 0.1),
    noise: float = 0.1,
    lr: float = 1.0,
    spectrum: torch.Tensor | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    progress: bool = True,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    phase_init: str = "offset",
    fold_bn: bool = True,
    max_batch: int | None = None,
) -> RenderResult:
    """Magnitude-constrained feature visualization (Fel et al. 2023).

    Parameters
    ----------
    objective : Objective
        What to maximise; its ``n_targets`` (``T``) images are optimised in one batch.
    steps, image_size, crops, lr
        NAdam steps, even canvas side, crops ``K`` per target and step, learning rate.
    crop_size : (mean, std)
        Crop area as a fraction of the canvas, ``N(mean, std)`` (side 0.5 on average).
    noise : float
        Half-width of the uniform noise added to the crops (images in [0, 1]).
    spectrum : torch.Tensor, optional
        ``(3, H, W//2+1)`` magnitude; the packaged ImageNet spectrum if ``None``.
    seed : int, optional
        Target ``t`` uses seed ``seed + t``: the same seed gives the same images,
        and a target gets the same image alone or in a batch. Drawn at random
        (and recorded in the result) if ``None``.
    device : optional
        Must be the model's device; the model's device if ``None``.
    amp : bool
        bf16 autocast for the model on CUDA (ignored on CPU).
    input_size, mean, std
        Side of the model input and its normalisation (ImageNet by default).
    phase_init : {"offset", "reference", "uniform"}
        See :class:`maco.param.MacoImage`.
    fold_bn : bool
        Fold BatchNorm into convolutions of a frozen copy of the model.
    max_batch : int, optional
        Largest number of crops per forward pass; more are processed in chunks
        with accumulated gradients (same result, less memory).

    Returns
    -------
    RenderResult
        Unpacks to ``images, alphas`` (without the ``T`` axis if ``T == 1``).
    """
    setup = _setup(
        objective, "maco", steps, image_size, crops, crop_size, noise, lr, seed, device, input_size, max_batch
    )
    if phase_init not in PHASE_INITS:
        raise ValueError(f"`phase_init` of maco must be one of {PHASE_INITS}; got {phase_init!r}.")
    if spectrum is None:
        spectrum = default_spectrum(image_size)
    _check_spectrum_shape(spectrum, (image_size, image_size), "maco")
    param = MacoImage(
        spectrum.to(setup["device"]),
        len(setup["seeds"]),
        phase_init=phase_init,
        generators=target_generators(setup["seeds"], 0),
    )
    return _run(objective, param, setup, mean, std, amp, fold_bn, progress, {"phase_init": phase_init})


def fourier(
    objective: Objective,
    *,
    steps: int = 256,
    image_size: int = 512,
    crops: int = 32,
    crop_size: tuple[float, float] = (0.25, 0.1),
    noise: float = 0.1,
    lr: float = 0.05,
    decay_power: float = 1.0,
    seed: int | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    progress: bool = True,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    fold_bn: bool = True,
    max_batch: int | None = None,
) -> RenderResult:
    """Classic Fourier-preconditioned visualization (Olah et al. 2017) in the same loop as :func:`maco`."""
    setup = _setup(
        objective, "fourier", steps, image_size, crops, crop_size, noise, lr, seed, device, input_size, max_batch
    )
    param = FourierImage(
        image_size,
        image_size,
        len(setup["seeds"]),
        decay_power=decay_power,
        generators=target_generators(setup["seeds"], 0),
        device=setup["device"],
    )
    return _run(objective, param, setup, mean, std, amp, fold_bn, progress, {"decay_power": decay_power})


def pixels(
    objective: Objective,
    *,
    steps: int = 256,
    image_size: int = 512,
    crops: int = 32,
    crop_size: tuple[float, float] = (0.25, 0.1),
    noise: float = 0.1,
    lr: float = 0.05,
    seed: int | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    progress: bool = True,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    fold_bn: bool = True,
    max_batch: int | None = None,
) -> RenderResult:
    """Plain-pixel visualization (the naive baseline) in the same loop as :func:`maco`."""
    setup = _setup(
        objective, "pixels", steps, image_size, crops, crop_size, noise, lr, seed, device, input_size, max_batch
    )
    param = PixelImage(
        image_size,
        image_size,
        len(setup["seeds"]),
        generators=target_generators(setup["seeds"], 0),
        device=setup["device"],
    )
    return _run(objective, param, setup, mean, std, amp, fold_bn, progress, {})


def _setup(
    objective: Objective,
    where: str,
    steps: int,
    image_size: int,
    crops: int,
    crop_size: tuple[float, float],
    noise: float,
    lr: float,
    seed: int | None,
    device: torch.device | str | None,
    input_size: int,
    max_batch: int | None,
) -> dict:
    """Check the arguments shared by every method; resolve the device and the per-target seeds."""
    if not isinstance(objective, Objective):
        raise TypeError(
            f"`objective` of {where} must be a maco.Objective (e.g. Objective.neuron(model, 'fc', 1)); "
            f"got {type(objective).__name__}."
        )
    for name, value in (("steps", steps), ("crops", crops), ("input_size", input_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` of {where} must be a positive integer; got {value!r}.")
    _check_even_size(image_size, where)
    _check_crop_size(crop_size, where)
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"`max_batch` of {where} must be a positive integer or None; got {max_batch!r}.")
    if not noise >= 0:
        raise ValueError(f"`noise` of {where} must be >= 0; got {noise!r}.")
    if not lr > 0:
        raise ValueError(f"`lr` of {where} must be > 0; got {lr!r}.")
    found = model_device(objective.model)
    if device is None:
        resolved = found
    else:
        resolved = torch.device(device)
        same = resolved.type == found.type and (
            resolved.index is None or found.index is None or resolved.index == found.index
        )
        if not same:
            raise ValueError(
                f"`device` of {where} is {resolved} but the model is on {found}; move the model with "
                f"model.to({str(resolved)!r}) or pass device={str(found)!r}."
            )
        resolved = found
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` of {where} must be an int or None; got {type(seed).__name__}.")
    config = dict(
        method=where,
        steps=steps,
        image_size=image_size,
        crops=crops,
        crop_size=list(crop_size),
        noise=noise,
        lr=lr,
        input_size=input_size,
        max_batch=max_batch,
        objective=repr(objective),
    )
    return {"device": resolved, "seeds": [seed + t for t in range(objective.n_targets)], "config": config}


def _run(
    objective: Objective,
    param: nn.Module,
    setup: dict,
    mean: Sequence[float],
    std: Sequence[float],
    amp: bool,
    fold_bn: bool,
    progress: bool,
    extra: dict,
) -> RenderResult:
    """Run the shared loop with NAdam; the result's config records every setting."""
    c = {**setup["config"], **extra, "mean": list(mean), "std": list(std), "amp": amp, "fold_bn": fold_bn}
    return render(
        objective,
        param,
        seeds=setup["seeds"],
        steps=c["steps"],
        crops=c["crops"],
        crop_size=tuple(c["crop_size"]),
        noise=c["noise"],
        input_size=c["input_size"],
        mean=mean,
        std=std,
        device=setup["device"],
        optimizer=lambda params: torch.optim.NAdam(params, lr=c["lr"]),
        amp=amp,
        fold_bn=fold_bn,
        progress=progress,
        max_batch=c["max_batch"],
        config=c,
    )
