"""The optimisation loop shared by MaCo and the baselines.

Notation: ``T`` targets, ``K`` crops per target, canvas ``H x W``, model
input side ``s``. One step renders the ``T`` canvases, cuts ``K`` crops from
each, adds noise, normalises, runs the frozen model once on all ``T * K``
crops (stopping at the deepest layer the objective reads), and ascends the
sum of the per-target scores. The alpha map of each target accumulates
``|d score / d canvas|`` over all steps.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .hooks import forward_to_layers
from .model import check_finite_weights, float32_model, fold_batchnorm, frozen
from .objectives import Objective
from .transforms import add_uniform_noise, crop_and_resize, sample_crop_boxes

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NonFiniteScoreError",
    "RenderResult",
    "render",
    "render_step",
    "target_generators",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCHEMA_VERSION = 1
_CHECK_EVERY = 32


class NonFiniteScoreError(FloatingPointError):
    """A score, or its gradient with respect to the image, became NaN or infinite during the optimisation."""


@dataclass
class RenderResult:
    """What a visualization run returns.

    ``images`` ``(T, 3, H, W)`` in [0, 1] and ``alphas`` ``(T, 1, H, W)``
    (raw accumulated gradient magnitude) are on the CPU; ``history`` is the
    ``(steps, T)`` score trace. Unpacking gives ``images, alphas``, without
    the ``T`` axis for a single target: ``image, alpha = maco(...)``.
    """

    images: torch.Tensor
    alphas: torch.Tensor
    names: list[str]
    history: torch.Tensor
    seeds: list[int]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.images.shape[0] == 1:
            return iter((self.images[0], self.alphas[0]))
        return iter((self.images, self.alphas))

    @property
    def images_per_second(self) -> float:
        """Crops through the model per second (``steps * T * K / seconds``)."""
        steps, n_targets = self.history.shape
        return steps * n_targets * self.config.get("crops", 1) / max(self.seconds, 1e-9)

    def save(self, directory: str | Path) -> Path:
        """Write ``tensors.npz`` and ``result.json`` into ``directory``, atomically."""
        directory = Path(directory)
        arrays = {"images": self.images.numpy(), "alphas": self.alphas.numpy(), "history": self.history.numpy()}
        atomic_write(directory / "tensors.npz", lambda handle: np.savez_compressed(handle, **arrays))
        meta = {key: value for key, value in asdict(self).items() if key not in arrays}
        meta["schema_version"] = SCHEMA_VERSION
        text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False).encode()
        atomic_write(directory / "result.json", lambda handle: handle.write(text))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "RenderResult":
        directory = Path(directory)
        meta = json.loads((directory / "result.json").read_text())
        if meta.pop("schema_version", None) != SCHEMA_VERSION:
            raise ValueError(f"{directory} holds a RenderResult of another schema version; re-run the visualization.")
        with np.load(directory / "tensors.npz", allow_pickle=False) as arrays:
            tensors = {key: torch.from_numpy(arrays[key]) for key in ("images", "alphas", "history")}
        return cls(**tensors, **meta)


def target_generators(seeds: Sequence[int], stream: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per target for one random stream (0: init, 1: crops, 2: noise)."""
    return [torch.Generator(device=device).manual_seed((int(seed) * 4 + stream) % (2**63)) for seed in seeds]


def render_step(
    model: nn.Module,
    objective: Objective,
    param: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    crops: int,
    noise: float,
    input_size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    boxes: torch.Tensor,
    noise_generators: Sequence[torch.Generator],
    amp: bool = False,
    channels_last: bool = False,
    max_batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step.

    ``boxes`` holds this step's ``(T, K, 4)`` crop boxes
    (:func:`~maco.transforms.sample_crop_boxes`), already on the device.

    With ``max_batch``, the ``T * K`` crops go through the model in chunks of
    at most that many images (every target keeps its share of crops in each
    chunk); gradients accumulate, so the step is the same, in less memory.

    Returns
    -------
    scores : torch.Tensor
        ``(T,)`` scores before the update (detached, on the device).
    canvas_grad : torch.Tensor
        ``(T, 3, H, W)`` gradient of the summed score with respect to the canvas.
    """
    n_targets = len(noise_generators)
    optimizer.zero_grad(set_to_none=True)
    canvas = param()
    leaf = canvas.detach().requires_grad_(True)
    batch = add_uniform_noise(crop_and_resize(leaf, boxes, input_size), noise, noise_generators)
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
    param: nn.Module,
    *,
    seeds: Sequence[int],
    steps: int,
    crops: int,
    crop_size: tuple[float, float],
    noise: float,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    amp: bool = True,
    fold_bn: bool = True,
    progress: bool = True,
    max_batch: int | None = None,
    config: dict[str, Any] | None = None,
) -> RenderResult:
    """Optimise ``param`` for ``objective`` and return images, alphas and the score trace.

    The model is frozen during the run and restored afterwards. On CUDA the
    crops run in bf16 autocast (``amp``) and channels_last; with ``fold_bn``
    the model's BatchNorms are folded into a frozen copy first. A model with
    NaN or inf weights is refused up front (a ValueError naming the tensor);
    a model in another floating dtype than float32 runs as a float32 copy.
    """
    model = objective.model
    cuda = device.type == "cuda"
    n_targets = len(seeds)
    names = objective.names
    mean_t = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
    # Every step's crop boxes drawn up front (each target from its own stream, in step order) and copied to the
    # device once: a small host-to-device copy per step would synchronise the host with the GPU at every step.
    box_generators = target_generators(seeds, 1)
    all_boxes = torch.stack([
        torch.stack([sample_crop_boxes(crops, crop_size=crop_size, generator=gen) for _ in range(steps)])
        for gen in box_generators
    ], dim=1).to(device)
    noise_generators = target_generators(seeds, 2, device)
    opt = optimizer(list(param.parameters()))
    start = time.perf_counter()
    with frozen(model):
        check_finite_weights(model)
        work = float32_model(model)
        if fold_bn:
            probe = torch.rand(
                2, 3, input_size, input_size, device=device, generator=target_generators([0], 3, device)[0]
            )
            work = fold_batchnorm(work, (probe - mean_t) / std_t)
        if cuda:
            work = (work if work is not model else copy.deepcopy(model)).to(memory_format=torch.channels_last)
        history = torch.empty(steps, n_targets, device=device)
        alphas = None
        checked = 0
        for step in tqdm(range(steps), disable=not progress, desc="maco", leave=False):
            scores, grad = render_step(
                work,
                objective,
                param,
                opt,
                crops=crops,
                noise=noise,
                input_size=input_size,
                mean=mean_t,
                std=std_t,
                boxes=all_boxes[step],
                noise_generators=noise_generators,
                amp=amp and cuda,
                channels_last=cuda,
                max_batch=max_batch,
            )
            history[step] = scores
            magnitude = grad.detach().abs().mean(1, keepdim=True)
            alphas = magnitude if alphas is None else alphas.add_(magnitude)
            if (step + 1) % _CHECK_EVERY == 0 or step + 1 == steps:
                _check_finite(history[: step + 1], checked, alphas, names)
                checked = step + 1
        with torch.no_grad():
            images = param().detach().float().cpu()
        if cuda:
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return RenderResult(
        images=images,
        alphas=alphas.float().cpu(),
        names=names,
        history=history.float().cpu(),
        seeds=[int(s) for s in seeds],
        seconds=seconds,
        config=dict(config or {}),
    )
