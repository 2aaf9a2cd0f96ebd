"""One-call feature visualization: MaCo and the two classic baselines.

``maco`` keeps the seeds' call shape::

    image, alpha = maco(Objective.neuron(model, "fc", 1))
    images, alphas = maco(Objective.direction(model, "avgpool", W), steps=64, image_size=256)  # W: (k, 2048)
    result = maco(objective, settings=RenderSettings(steps=64, seed=0), crops=16)  # keywords override settings

Each function builds one :class:`~maco.settings.RenderSettings` (its method's defaults, or ``settings``, with the
keywords given applied and checked there) and runs :func:`maco.render.render`; only the image parameterization
and its defaults differ, so comparisons are fair.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Mapping, Sequence

import torch

from .objectives import Objective
from .render import IMAGENET_MEAN, IMAGENET_STD, OptimizerFactory, Transforms, render
from .result import RenderResult
from .settings import RenderSettings

__all__ = ["fourier", "maco", "pixels"]


class _FromSettings:
    """Default of a keyword that takes its value from ``settings`` (or from the method's defaults)."""

    def __repr__(self) -> str:
        return "<from settings>"


# A sentinel, not None: None is a real value of `seed` (draw one), `max_batch` (no chunks), `amp` and
# `channels_last` (on CUDA only).
_FROM_SETTINGS: Any = _FromSettings()
_SETTING_NAMES = frozenset(f.name for f in fields(RenderSettings))


def maco(
    objective: Objective,
    *,
    settings: RenderSettings | None = None,
    steps: int = _FROM_SETTINGS,
    image_size: int = _FROM_SETTINGS,
    crops: int = _FROM_SETTINGS,
    crop_size: tuple[float, float] = _FROM_SETTINGS,
    noise: float = _FROM_SETTINGS,
    lr: float = _FROM_SETTINGS,
    seed: int | None = _FROM_SETTINGS,
    amp: bool | None = _FROM_SETTINGS,
    channels_last: bool | None = _FROM_SETTINGS,
    phase_init: str = _FROM_SETTINGS,
    fold_bn: bool = _FROM_SETTINGS,
    max_batch: int | None = _FROM_SETTINGS,
    spectrum: torch.Tensor | None = None,
    optimizer: OptimizerFactory | None = None,
    transforms: Transforms | None = None,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> RenderResult:
    """Magnitude-constrained feature visualization (Fel et al. 2023).

    Parameters
    ----------
    objective : Objective
        What to maximise; its ``n_targets`` (``T``) images are optimised in one batch.
    settings : RenderSettings, optional
        Budget and options; ``RenderSettings()`` (the paper's defaults: 256 steps, 512 px, 32 crops, lr 1.0)
        if ``None``. Its ``method`` must be ``"maco"``.
    steps, image_size, crops, crop_size, noise, lr, seed, amp, channels_last, phase_init, fold_bn, max_batch
        Override the field of the same name of ``settings`` (see :class:`~maco.settings.RenderSettings`, which
        checks them); omitted ones keep the settings' values.
    spectrum : torch.Tensor, optional
        ``(3, H, W//2+1)`` magnitude; the packaged ImageNet spectrum if ``None``.
    optimizer, transforms
        Replace NAdam and the random crops + noise (see :func:`maco.render.render`).
    input_size, mean, std
        Side of the model input and its normalisation (ImageNet by default): they describe the model.
    device : optional
        Must be the model's device; the model's device if ``None``.
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    RenderResult
        Unpacks to ``images, alphas`` (without the ``T`` axis if ``T == 1``); ``config`` records every setting.
    """
    return render(
        objective,
        _settings("maco", settings, locals()),
        spectrum=spectrum,
        optimizer=optimizer,
        transforms=transforms,
        input_size=input_size,
        mean=mean,
        std=std,
        device=device,
        progress=progress,
    )


def fourier(
    objective: Objective,
    *,
    settings: RenderSettings | None = None,
    steps: int = _FROM_SETTINGS,
    image_size: int = _FROM_SETTINGS,
    crops: int = _FROM_SETTINGS,
    crop_size: tuple[float, float] = _FROM_SETTINGS,
    noise: float = _FROM_SETTINGS,
    lr: float = _FROM_SETTINGS,
    seed: int | None = _FROM_SETTINGS,
    amp: bool | None = _FROM_SETTINGS,
    channels_last: bool | None = _FROM_SETTINGS,
    decay_power: float = _FROM_SETTINGS,
    fold_bn: bool = _FROM_SETTINGS,
    max_batch: int | None = _FROM_SETTINGS,
    optimizer: OptimizerFactory | None = None,
    transforms: Transforms | None = None,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> RenderResult:
    """Classic Fourier-preconditioned visualization (Olah et al. 2017) in the same loop as :func:`maco`.

    Same keywords as :func:`maco`, without ``spectrum`` and ``phase_init``; ``settings`` defaults to
    ``RenderSettings(method="fourier")`` (lr 0.05) and must have that method. ``decay_power`` (1.0) sets the
    ``1 / f^decay_power`` preconditioning of the spectrum.
    """
    return render(
        objective,
        _settings("fourier", settings, locals()),
        optimizer=optimizer,
        transforms=transforms,
        input_size=input_size,
        mean=mean,
        std=std,
        device=device,
        progress=progress,
    )


def pixels(
    objective: Objective,
    *,
    settings: RenderSettings | None = None,
    steps: int = _FROM_SETTINGS,
    image_size: int = _FROM_SETTINGS,
    crops: int = _FROM_SETTINGS,
    crop_size: tuple[float, float] = _FROM_SETTINGS,
    noise: float = _FROM_SETTINGS,
    lr: float = _FROM_SETTINGS,
    seed: int | None = _FROM_SETTINGS,
    amp: bool | None = _FROM_SETTINGS,
    channels_last: bool | None = _FROM_SETTINGS,
    fold_bn: bool = _FROM_SETTINGS,
    max_batch: int | None = _FROM_SETTINGS,
    optimizer: OptimizerFactory | None = None,
    transforms: Transforms | None = None,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> RenderResult:
    """Plain-pixel visualization (the naive baseline) in the same loop as :func:`maco`.

    Same keywords as :func:`maco`, without ``spectrum`` and ``phase_init``; ``settings`` defaults to
    ``RenderSettings(method="pixels")`` (lr 0.05) and must have that method.
    """
    return render(
        objective,
        _settings("pixels", settings, locals()),
        optimizer=optimizer,
        transforms=transforms,
        input_size=input_size,
        mean=mean,
        std=std,
        device=device,
        progress=progress,
    )


def _settings(method: str, settings: RenderSettings | None, arguments: Mapping[str, Any]) -> RenderSettings:
    """``settings`` (the method's defaults if ``None``) with the setting keywords given in ``arguments`` applied.

    ``arguments`` is the caller's ``locals()``: reading the settings' field names from it keeps the three
    functions free of a hand-written copy of the field list.
    """
    given = {name: value for name, value in arguments.items() if name in _SETTING_NAMES and value is not _FROM_SETTINGS}
    if settings is None:
        return RenderSettings(method=method, **given)
    if not isinstance(settings, RenderSettings):
        raise TypeError(
            f"`settings` of {method} must be a maco.RenderSettings (e.g. RenderSettings(method={method!r}, "
            f"steps=64)); got {type(settings).__name__}. Read a stored dict back with RenderSettings.from_dict."
        )
    if settings.method != method:
        raise ValueError(
            f"`settings` of {method} must have method={method!r}; got method={settings.method!r}. Call "
            f"maco.{settings.method}(...) or maco.render(objective, settings) instead."
        )
    return replace(settings, **given)
