"""The optimisation loop shared by MaCo and the baselines.

Notation: ``T`` targets, ``K`` crops per target, canvas ``H x W``, model
input side ``s``. One step renders the ``T`` canvases, turns them into
``T * K`` model inputs with the transforms (by default ``K`` random crops of
each, resized, plus noise), normalises, runs the frozen model once on all of
them (stopping at the deepest layer the objective reads), and ascends the
sum of the per-target scores. The alpha map of each target accumulates
``|d score / d canvas|`` over all steps.

:func:`render` is the one entry point. As in Lucent's ``render_vis``, the
caller may replace every part (parameterization, optimizer, transforms), and
each part has a default built from the :class:`~maco.settings.RenderSettings`.
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import nullcontext
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import on_cuda_by_default
from .hooks import forward_to_layers
from .model import check_finite_weights, float32_model, fold_batchnorm, frozen, model_device
from .objectives import Objective
from .param import FourierImage, MacoImage, PixelImage
from .result import RenderResult
from .settings import RenderSettings
from .spectrum import _check_spectrum_shape, default_spectrum
from .transforms import CropsAndNoise, target_generators

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NonFiniteScoreError",
    "OptimizerFactory",
    "Transforms",
    "render",
    "render_step",
]

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
"""``optimizer(parameters) -> torch.optim.Optimizer``, e.g. ``lambda params: torch.optim.Adam(params, lr=0.05)``."""
Transforms = Callable[[torch.Tensor, int], torch.Tensor]
"""``transforms(canvas, step) -> inputs``: ``(T, 3, H, W)`` in [0, 1] to ``(T * K, 3, s, s)``, target-major."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CHECK_EVERY = 32


class NonFiniteScoreError(FloatingPointError):
    """A score, or its gradient with respect to the image, became NaN or infinite during the optimisation."""


def render_step(
    model: nn.Module,
    objective: Objective,
    param: nn.Module,
    optimizer: torch.optim.Optimizer,
    transforms: Transforms,
    step: int,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    amp: bool = False,
    channels_last: bool = False,
    max_batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step: ``param() -> transforms(canvas, step) -> normalise -> model -> objective``.

    With ``max_batch``, the ``T * K`` inputs go through the model in chunks of
    at most that many images (every target keeps its share of crops in each
    chunk); gradients accumulate, so the step is the same, in less memory.

    Returns
    -------
    scores : torch.Tensor
        ``(T,)`` scores before the update (detached, on the device).
    canvas_grad : torch.Tensor
        ``(T, 3, H, W)`` gradient of the summed score with respect to the canvas.
    """
    n_targets = objective.n_targets
    optimizer.zero_grad(set_to_none=True)
    canvas = param()
    if canvas.ndim != 4 or canvas.shape[:2] != (n_targets, 3):
        raise ValueError(
            f"`param` must return (T, 3, H, W) canvases with T = objective.n_targets = {n_targets}; "
            f"got shape {tuple(canvas.shape)}."
        )
    leaf = canvas.detach().requires_grad_(True)
    batch = transforms(leaf, step)
    if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[0] % n_targets:
        raise ValueError(
            f"`transforms` must return (T * K, 3, s, s) model inputs, target-major, with T = {n_targets}; "
            f"got shape {tuple(batch.shape)}."
        )
    crops = batch.shape[0] // n_targets
    batch = ((batch - mean) / std).unflatten(0, (n_targets, crops))
    per_chunk = crops if max_batch is None else max(1, min(crops, max_batch // n_targets))
    autocast = torch.autocast(batch.device.type, dtype=torch.bfloat16) if amp else nullcontext()
    scores = torch.zeros(n_targets, device=batch.device)
    for start in range(0, crops, per_chunk):
        chunk = batch[:, start : start + per_chunk].flatten(0, 1)
        if channels_last:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        with autocast:
            acts = forward_to_layers(model, chunk, objective.layers)
        part = objective(acts, n_targets) * (chunk.shape[0] / (n_targets * crops))
        last = start + per_chunk >= crops
        (-part.sum()).backward(retain_graph=not last)
        scores += part.detach()
    canvas.backward(leaf.grad)
    optimizer.step()
    return scores, leaf.grad


def _check_finite(history: torch.Tensor, start: int, alphas: torch.Tensor, names: Sequence[str]) -> None:
    """Raise if a score since step ``start``, or any accumulated gradient, is NaN or inf (one device sync)."""
    chunk = history[start:]
    scores_ok, grads_ok = torch.stack([torch.isfinite(chunk).all(), torch.isfinite(alphas).all()]).tolist()
    if not scores_ok:
        step, target = (~torch.isfinite(chunk)).nonzero()[0].tolist()
        raise NonFiniteScoreError(
            f"the score of target {target} ({names[target]}) became {chunk[step, target].item()} at step "
            f"{start + step}; lower `lr`, check the model for NaNs, or use amp=False."
        )
    if not grads_ok:
        target = int((~torch.isfinite(alphas)).flatten(1).any(1).nonzero()[0, 0])
        raise NonFiniteScoreError(
            f"the gradient of target {target} ({names[target]}) with respect to the image became NaN or inf by step "
            f"{len(history) - 1} while its score stayed finite: the model's backward pass is not finite (e.g. sqrt "
            "or log at 0, or an overflow); check the model, or use amp=False."
        )


def render(
    objective: Objective,
    settings: RenderSettings | None = None,
    *,
    param: nn.Module | None = None,
    optimizer: OptimizerFactory | None = None,
    transforms: Transforms | None = None,
    spectrum: torch.Tensor | None = None,
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> RenderResult:
    """Optimise one image per target of ``objective``; return the images, alpha maps and score trace.

    Parameters
    ----------
    objective : Objective
        What to maximise; its ``n_targets`` (``T``) images are optimised in one batch.
    settings : RenderSettings, optional
        Method, budget, seed and speed options; MaCo with the paper's defaults if ``None``.
    param : nn.Module, optional
        The image parameterization: ``param()`` returns ``(T, 3, image_size, image_size)`` in [0, 1] and its
        parameters are what the optimizer changes. Default: the one of ``settings.method`` (``MacoImage``,
        ``FourierImage`` or ``PixelImage``), target ``t`` initialised from seed ``seed + t``.
    optimizer : callable, optional
        ``optimizer(parameters) -> torch.optim.Optimizer``; NAdam at ``settings.lr`` if ``None``.
    transforms : callable, optional
        ``transforms(canvas, step)``: ``(T, 3, H, W)`` canvases in [0, 1] to ``(T * K, 3, s, s)`` model inputs,
        target-major, before the normalisation by ``mean`` and ``std``. :class:`~maco.transforms.CropsAndNoise`
        if ``None``.
    spectrum : torch.Tensor, optional
        ``(3, H, W//2+1)`` magnitude of the default MaCo parameterization; the packaged ImageNet spectrum if
        ``None``.
    input_size, mean, std
        Side of the model input and its normalisation: they describe the model, not the run.
    device : optional
        Must be the model's device; the model's device if ``None``.
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    RenderResult
        Its ``config`` records the settings (with the seed drawn when ``settings.seed`` is ``None``), the
        objective, the model's preprocessing and the class names of the parameterization, optimizer and
        transforms that ran.

    Notes
    -----
    The model is frozen during the run and restored afterwards. On CUDA the
    crops run in bf16 autocast and channels_last by default; ``settings.amp``
    and ``settings.channels_last`` set either on any device (a CPU run of the
    GPU path). With ``fold_bn`` the model's BatchNorms are folded into a
    frozen copy first; with channels_last the model runs as a channels_last
    copy, so the caller's model keeps its memory format. A model with
    NaN or inf weights is refused up front (a ValueError naming the tensor);
    a model in another floating dtype than float32 runs as a float32 copy.

    Examples
    --------
    >>> settings = RenderSettings(steps=64, image_size=256, seed=0)
    >>> result = render(
    ...     Objective.channel(model, "layer3", 7),
    ...     settings,
    ...     optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    ...     transforms=lambda canvas, step: F.interpolate(canvas, size=224, mode="bilinear"),
    ... )  # doctest: +SKIP
    """
    settings = RenderSettings() if settings is None else settings
    if not isinstance(settings, RenderSettings):
        raise TypeError(
            f"`settings` of render must be a maco.RenderSettings (e.g. RenderSettings(steps=64)); got "
            f"{type(settings).__name__}. Read a stored dict back with RenderSettings.from_dict."
        )
    device = _resolve_device(objective, device)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"`input_size` of render must be a positive integer; got {input_size!r}.")
    for name, part in (("optimizer", optimizer), ("transforms", transforms)):
        if part is not None and not callable(part):
            raise TypeError(f"`{name}` of render must be a callable (see its docstring); got {type(part).__name__}.")
    seed = int.from_bytes(os.urandom(4), "little") if settings.seed is None else settings.seed
    seeds = [seed + t for t in range(objective.n_targets)]
    param = _default_param(settings, seeds, device, spectrum) if param is None else _check_param(param, spectrum)
    transforms = CropsAndNoise(settings, seeds, input_size, device) if transforms is None else transforms
    parameters = list(param.parameters())
    opt = torch.optim.NAdam(parameters, lr=settings.lr) if optimizer is None else optimizer(parameters)
    config = {
        **settings.to_dict(),
        "seed": seed,
        "objective": repr(objective),
        "input_size": input_size,
        "mean": list(mean),
        "std": list(std),
        "param": type(param).__name__,
        "optimizer": type(opt).__name__,
        "transforms": getattr(transforms, "__qualname__", type(transforms).__name__),
    }
    start = time.perf_counter()
    images, alphas, history = _optimise(
        objective, param, opt, transforms, settings, input_size, mean, std, device, progress
    )
    return RenderResult(
        images=images,
        alphas=alphas,
        names=objective.names,
        history=history,
        seeds=seeds,
        seconds=time.perf_counter() - start,
        config=config,
    )


def _resolve_device(objective: Objective, device: torch.device | str | None) -> torch.device:
    """Check the objective, and that ``device`` (if given) is the model's; return the model's device."""
    if not isinstance(objective, Objective):
        raise TypeError(
            "`objective` of render must be a maco.Objective (e.g. Objective.neuron(model, 'fc', 1)); "
            f"got {type(objective).__name__}."
        )
    found = model_device(objective.model)
    if device is not None:
        wanted = torch.device(device)
        same = wanted.type == found.type and (
            wanted.index is None or found.index is None or wanted.index == found.index
        )
        if not same:
            raise ValueError(
                f"`device` of render is {wanted} but the model is on {found}; move the model with "
                f"model.to({str(wanted)!r}) or pass device={str(found)!r}."
            )
    return found


def _default_param(
    settings: RenderSettings, seeds: Sequence[int], device: torch.device, spectrum: torch.Tensor | None
) -> nn.Module:
    """The parameterization of ``settings.method``; target ``t`` draws its initial values from seed ``seeds[t]``."""
    size, generators = settings.image_size, target_generators(seeds, 0)
    if settings.method == "maco":
        spectrum = default_spectrum(size) if spectrum is None else spectrum
        _check_spectrum_shape(spectrum, (size, size), "render")
        return MacoImage(spectrum.to(device), len(seeds), phase_init=settings.phase_init, generators=generators)
    _check_no_spectrum(spectrum, f"method={settings.method!r}")
    if settings.method == "fourier":
        return FourierImage(
            size, size, len(seeds), decay_power=settings.decay_power, generators=generators, device=device
        )
    return PixelImage(size, size, len(seeds), generators=generators, device=device)


def _check_param(param: nn.Module, spectrum: torch.Tensor | None) -> nn.Module:
    if not isinstance(param, nn.Module):
        raise TypeError(
            "`param` of render must be an nn.Module whose forward() returns (T, 3, H, W) images in [0, 1] "
            f"(e.g. maco.MacoImage); got {type(param).__name__}."
        )
    _check_no_spectrum(spectrum, "a `param` of your own")
    return param


def _check_no_spectrum(spectrum: torch.Tensor | None, instead: str) -> None:
    """``spectrum`` feeds the default MaCo parameterization only: refuse it rather than ignore it."""
    if spectrum is not None:
        raise ValueError(
            f"`spectrum` of render is the magnitude of the default method='maco' parameterization, unused with "
            f"{instead}; drop it."
        )


def _optimise(
    objective: Objective,
    param: nn.Module,
    opt: torch.optim.Optimizer,
    transforms: Transforms,
    settings: RenderSettings,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loop on a frozen (BatchNorm-folded, float32, maybe channels_last) model: images, alphas, history."""
    model = objective.model
    amp = on_cuda_by_default(settings.amp, device)
    channels_last = on_cuda_by_default(settings.channels_last, device)
    mean_t = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    with frozen(model):
        check_finite_weights(model)
        work = float32_model(model)
        if settings.fold_bn:
            probe = torch.rand(
                2, 3, input_size, input_size, device=device, generator=target_generators([0], 3, device)[0]
            )
            work = fold_batchnorm(work, (probe - mean_t) / std_t)
        if channels_last:
            work = (work if work is not model else copy.deepcopy(model)).to(memory_format=torch.channels_last)
        history = torch.empty(settings.steps, objective.n_targets, device=device)
        alphas = None
        checked = 0
        for step in tqdm(range(settings.steps), disable=not progress, desc=settings.method, leave=False):
            scores, grad = render_step(
                work,
                objective,
                param,
                opt,
                transforms,
                step,
                mean=mean_t,
                std=std_t,
                amp=amp,
                channels_last=channels_last,
                max_batch=settings.max_batch,
            )
            if step == 0 and grad.shape[-2:] != (settings.image_size, settings.image_size):
                raise ValueError(
                    f"`param` of render makes {grad.shape[-2]}x{grad.shape[-1]} canvases but settings.image_size "
                    f"is {settings.image_size}; render square canvases of side image_size (it is recorded)."
                )
            history[step] = scores
            magnitude = grad.detach().abs().mean(1, keepdim=True)
            alphas = magnitude if alphas is None else alphas.add_(magnitude)
            if (step + 1) % _CHECK_EVERY == 0 or step + 1 == settings.steps:
                _check_finite(history[: step + 1], checked, alphas, objective.names)
                checked = step + 1
        with torch.no_grad():
            images = param().detach().float().cpu()  # the copy to the host waits for the device's queue
    return images, alphas.float().cpu(), history.float().cpu()
