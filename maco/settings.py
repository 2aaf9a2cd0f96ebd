"""The settings of a visualization run: the optimisation budget and the method, checked once.

:class:`RenderSettings` is the one place that holds the paper's defaults and checks every setting, so
:func:`maco.maco`, :func:`maco.fourier`, :func:`maco.pixels` and :func:`maco.render` share them, and a
pipeline keeps one object that it records (:meth:`RenderSettings.to_dict`) and reads back
(:meth:`RenderSettings.from_dict`). The model's preprocessing (input side, mean, std) is not a setting: it
describes the model, so it is passed beside the settings, where the model is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any, Mapping

from .param import PHASE_INITS
from .spectrum import _check_even_size

__all__ = ["METHODS", "PAPER_LR", "RenderSettings"]

METHODS = ("maco", "fourier", "pixels")
# Learning rates of NAdam that the paper and the references use: the phase of MaCo is an angle, so steps of
# order 1 make sense; the Fourier coefficients and pixels start at 0.01 and need small steps.
PAPER_LR = {"maco": 1.0, "fourier": 0.05, "pixels": 0.05}
_WHERE = "RenderSettings"


@dataclass(frozen=True, kw_only=True)
class RenderSettings:
    """How a visualization is optimised: method, budget, randomness and speed options (paper defaults).

    ``RenderSettings()`` is MaCo as in the paper; ``RenderSettings(method="fourier")`` is the Fourier
    baseline with its own defaults. The fields are checked and normalised once, here (integers to ``int``,
    numbers to ``float``, ``crop_size`` to a tuple), so a settings object is always valid, hashable and
    equal to its JSON round trip.

    Parameters
    ----------
    method : {"maco", "fourier", "pixels"}
        The default image parameterization: MaCo's phase with a fixed magnitude (Fel et al. 2023), the
        classic Fourier preconditioning (Olah et al. 2017), or plain pixels. It also picks the defaults of
        ``lr``, ``phase_init`` and ``decay_power``.
    steps : int
        NAdam steps.
    image_size : int
        Even side of the square canvas (``irfft2`` needs even sides).
    crops : int
        Crops ``K`` per target and step.
    crop_size : (mean, std)
        Crop area as a fraction of the canvas, ``N(mean, std)`` clipped to [0.05, 1] (side 0.5 on average).
    noise : float
        Half-width of the uniform noise added to the crops (images in [0, 1]).
    lr : float, optional
        NAdam learning rate; ``None`` takes the method's paper value (:data:`PAPER_LR`: maco 1.0, fourier and
        pixels 0.05).
    seed : int, optional
        Target ``t`` uses seed ``seed + t``, so the same seed gives the same images and a target gets the
        same image alone or in a batch. ``None`` draws one per run, recorded in the result.
    amp : bool, optional
        bf16 autocast for the model's forward pass. ``None``: on CUDA only (on most CPUs bf16 is slower than
        float32); ``True`` or ``False``: on every device, so the GPU path can be run, and tested, on a CPU.
    channels_last : bool, optional
        Run the model and its inputs in the channels_last memory format (faster convolutions on GPUs with
        tensor cores); ``None``, ``True`` and ``False`` as for ``amp``.
    fold_bn : bool
        Fold BatchNorm into the convolutions of a frozen copy of the model (same output, faster).
    max_batch : int, optional
        Largest number of crops per forward pass; more are processed in chunks with accumulated gradients
        (same result, less memory).
    phase_init : {"offset", "reference", "uniform"}, optional
        MaCo only (see :class:`maco.param.MacoImage`); ``None`` means ``"offset"`` for maco and must stay
        ``None`` for the other methods, which have no phase.
    decay_power : float, optional
        Fourier only: the spectrum is preconditioned by ``1 / f^decay_power``; ``None`` means 1.0 for
        fourier and must stay ``None`` for the other methods.

    Examples
    --------
    >>> RenderSettings(steps=64, image_size=256).lr
    1.0
    >>> RenderSettings(method="fourier").decay_power
    1.0
    >>> RenderSettings.from_dict(RenderSettings(seed=0).to_dict()) == RenderSettings(seed=0)
    True
    """

    method: str = "maco"
    steps: int = 256
    image_size: int = 512
    crops: int = 32
    crop_size: tuple[float, float] = (0.25, 0.1)
    noise: float = 0.1
    lr: float | None = None
    seed: int | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    fold_bn: bool = True
    max_batch: int | None = None
    phase_init: str | None = None
    decay_power: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"`method` of {_WHERE} must be one of {METHODS}; got {self.method!r}.")
        image_size = _positive_int("image_size", self.image_size)
        _check_even_size(image_size, _WHERE)
        checked = {
            "steps": _positive_int("steps", self.steps),
            "image_size": image_size,
            "crops": _positive_int("crops", self.crops),
            "crop_size": _check_crop_size(self.crop_size, _WHERE),
            "noise": _number("noise", self.noise, minimum=0.0),
            "lr": _number("lr", PAPER_LR[self.method] if self.lr is None else self.lr, minimum=0.0, strict=True),
            "seed": None if self.seed is None else _integer("seed", self.seed),
            "amp": _optional_flag("amp", self.amp),
            "channels_last": _optional_flag("channels_last", self.channels_last),
            "fold_bn": _flag("fold_bn", self.fold_bn),
            "max_batch": None if self.max_batch is None else _positive_int("max_batch", self.max_batch),
            "phase_init": self._method_option("phase_init", "maco", "offset"),
            "decay_power": self._method_option("decay_power", "fourier", 1.0),
        }
        if checked["phase_init"] is not None and checked["phase_init"] not in PHASE_INITS:
            raise ValueError(f"`phase_init` of {_WHERE} must be one of {PHASE_INITS}; got {self.phase_init!r}.")
        if checked["decay_power"] is not None:
            checked["decay_power"] = _number("decay_power", checked["decay_power"], minimum=0.0)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def _method_option(self, name: str, owner: str, default: Any) -> Any:
        """The value of an option that only ``owner`` has: its default there, and refused for other methods."""
        value = getattr(self, name)
        if self.method == owner:
            return default if value is None else value
        if value is not None:
            raise ValueError(
                f"`{name}` of {_WHERE} applies to method={owner!r} only; got {name}={value!r} with "
                f"method={self.method!r}. Leave it None, or set method={owner!r}."
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able Python values (``crop_size`` as a list), for results and ``run.json``."""
        return {**asdict(self), "crop_size": list(self.crop_size)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderSettings:
        """Settings from :meth:`to_dict` output; missing fields take their defaults.

        An unknown key raises ``TypeError`` naming it and listing the fields: a record written by another
        version must not be read back as different settings without a word.
        """
        names = [f.name for f in fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            raise TypeError(f"RenderSettings.from_dict got unknown key(s) {unknown}; the fields are {names}.")
        return cls(**data)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"`{name}` of {_WHERE} must be an integer; got {type(value).__name__} {value!r}.")
    return int(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"`{name}` of {_WHERE} must be a positive integer; got {value!r}.")
    return int(value)


def _number(name: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise ValueError(f"`{name}` of {_WHERE} must be a finite number {bound} {minimum:g}; got {value!r}.")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` of {_WHERE} must be True or False; got {value!r}.")
    return value


def _optional_flag(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`{name}` of {_WHERE} must be True, False or None (None: on CUDA only); got {value!r}.")
    return value


def _check_crop_size(crop_size: tuple[float, float], where: str) -> tuple[float, float]:
    if (
        not isinstance(crop_size, (tuple, list))
        or len(crop_size) != 2
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in crop_size)
        or not 0 < crop_size[0] <= 1
        or crop_size[1] < 0
    ):
        raise ValueError(
            f"`crop_size` of {where} must be (mean, std) of the crop area as a fraction of the canvas, "
            f"with 0 < mean <= 1 and std >= 0; got {crop_size!r}. The paper's default is (0.25, 0.1)."
        )
    return float(crop_size[0]), float(crop_size[1])
