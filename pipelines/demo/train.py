"""Train the two demo networks and write their weights: ``python -m pipelines.demo.train``.

How the shipped weights were made
---------------------------------
Command: ``python -m pipelines.demo.train`` (defaults: ``--seeds 0 1``,
``--steps 108``, ``--batch 64``, ``--threads 2``), torch 2.14.1 CPU.
Model ``a`` uses seed 0, model ``b`` seed 1. The seed fixes the weight
initialisation, the batch order and the training images: every epoch is a
fresh draw of 192 images per class (1152 images, 18 steps) from
``DemoWorld(128)`` with seed ``1000 * (seed + 1) + epoch``, 108 AdamW steps
(6 epochs, one-cycle, max lr 4e-3). The world already varies position,
scale, aspect, mirroring, colours, clutter, which parts are drawn and
whether they are scattered; the only augmentation is zooming 30% of the
images into a random 56-80 px window, as the concept stage enlarges its
64 px patches. Besides the classes, the loss asks an auxiliary head for the
parts in every feature cell, keeps the features low on the background and
the logits near 0 on windows of clutter (see :func:`train_one`); so the
features hold one direction per part and each distinctive part is evidence
on its own. Held-out accuracy is measured on
``DemoWorld(128).dataset(100, seed=10_000)`` (600 images, a seed never used
for training). Run on 2026-11-30, 2 CPU cores shared with other jobs
(load 5-8; about 100 s per model at a lower load):

    model a (seed 0): 193 s training, held-out accuracy 1.0000 (600/600)
    model b (seed 1): 205 s training, held-out accuracy 0.9933 (596/600)
    whole command: 6 min 49 s wall (4 min 25 s of CPU); two runs gave
    identical weights of model a.

Training is deterministic on a CPU for a fixed thread count
(``torch.use_deterministic_algorithms(True)``). Weights are float32
state_dicts (about 0.8 MB each), written atomically through :mod:`pipelines.io`.
"""
from __future__ import annotations

import argparse
import io
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write_bytes
from .load import WEIGHT_FILES
from .model import DEMO_MEAN, DEMO_STD, DemoNet
from .parts import CLASS_NAMES, DISTINCTIVE_PARTS, PART_NAMES
from .world import DemoWorld

__all__ = ["evaluate", "main", "train_one"]

_logger = logging.getLogger(__name__)
HELD_OUT_SEED = 10_000
_STRIDE = 16  # DemoNet's total stride: one layer4 feature cell per 16 x 16 pixels
_ZOOM_SIDES = (56 / 128, 80 / 128)  # zoomed windows: 56-80 px of a 128 px image (concept patches are 64 px)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(DEMO_MEAN)[:, None, None]
    std = torch.tensor(DEMO_STD)[:, None, None]
    return (images - mean) / std


@torch.no_grad()
def evaluate(model: DemoNet, world: DemoWorld, n_per_class: int = 100, *, seed: int = HELD_OUT_SEED) -> float:
    """Accuracy of ``model`` on ``world.dataset(n_per_class, seed=seed)``."""
    images, labels = _draw(world, n_per_class, seed)
    model.eval()
    preds = torch.cat([model(x).argmax(1) for x in images.split(200)])
    return (preds == labels).float().mean().item()


def _draw(world: DemoWorld, n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images ``(N, 3, H, W)`` and labels ``(N,)``, like ``world.dataset`` without keeping masks."""
    images = [torch.from_numpy(world.sample(c, n_per_class, seed=seed)[0]) for c in range(len(CLASS_NAMES))]
    images = torch.cat(images).permute(0, 3, 1, 2).float().div_(255)
    return _normalise(images), torch.arange(len(CLASS_NAMES)).repeat_interleave(n_per_class)


def _draw_training(world: DemoWorld, n_per_class: int, seed: int, zoom: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch of training images, with part targets; a share ``zoom`` of them are zoomed-in crops.

    A zoomed image is a random square window of 56-80 px of a 128 px image (the concept stage looks at
    64 px patches) resized to the full size (bilinear, as :mod:`concepts.crops` does), masks alike.

    Returns
    -------
    images : ``(N, 3, H, W)`` normalised.
    labels : ``(N,)`` class indices.
    shares : ``(N, P + 1, H / 16, W / 16)`` the share of each layer4 feature cell that each part
        covers, and the background (last channel); they sum to 1.
    weights : ``(N,)`` 1 for images that show a distinctive part of their class (at least 2% of a
        zoomed image), else 0 (a window of clutter has no class).
    """
    rng = np.random.default_rng([seed, 1])
    s = world.image_size
    out = []
    for c, name in enumerate(CLASS_NAMES):
        raw, masks = world.sample(c, n_per_class, seed=seed)
        images = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255)
        masks = torch.from_numpy(masks).float()
        weights = torch.ones(n_per_class)
        zoomed = rng.random(n_per_class) < zoom
        sides = rng.integers(round(_ZOOM_SIDES[0] * s), round(_ZOOM_SIDES[1] * s) + 1, size=n_per_class)
        corners = rng.random((n_per_class, 2))
        distinctive = [PART_NAMES.index(p) for p in DISTINCTIVE_PARTS[name]]
        for i in np.flatnonzero(zoomed):
            side = int(sides[i])
            x0, y0 = (int(v * (s - side + 1)) for v in corners[i])
            window = (slice(None), slice(y0, y0 + side), slice(x0, x0 + side))
            images[i] = F.interpolate(images[i][window][None], size=(s, s), mode="bilinear", align_corners=False)[0]
            masks[i] = F.interpolate(masks[i][window][None], size=(s, s), mode="bilinear", align_corners=False)[0]
            weights[i] = float(masks[i, distinctive].sum(0).mean() >= 0.02)
        shares = F.avg_pool2d(masks, _STRIDE)
        out.append((images, shares, weights))
    images = torch.cat([o[0] for o in out])
    shares = torch.cat([o[1] for o in out])
    shares = torch.cat([shares, (1 - shares.sum(1, keepdim=True)).clamp_(min=0)], 1)
    labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(n_per_class)
    return _normalise(images), labels, shares, torch.cat([o[2] for o in out])


def train_one(seed: int, *, steps: int, batch: int, epoch_per_class: int = 192,
              world: DemoWorld | None = None, part_weight: float = 1.0, zoom: float = 0.3,
              background_weight: float = 0.1, quiet_weight: float = 0.1) -> DemoNet:
    """Train one :class:`DemoNet` from scratch (one-cycle AdamW, fresh images each epoch).

    The loss has four terms, so that the features are part-based (one
    direction per part, as the features of a network trained on many
    classes are) and each distinctive part is evidence on its own:

    - the cross-entropy of the classes, over the images that show a
      distinctive part of their class (a zoomed window may show only clutter);
    - ``part_weight`` times the cross-entropy of an auxiliary 1x1 convolution
      on the ``layer4`` features that tells, in every feature cell, the share
      of each part and of the background (soft targets from the exact masks);
      the auxiliary head is dropped after training;
    - ``background_weight`` times the mean squared logit of windows that show
      no distinctive part (no evidence for any class);
    - ``quiet_weight`` times the mean feature in cells that are background
      (more than 95% of their pixels).

    A share ``zoom`` of the images is zoomed in (see :func:`_draw_training`),
    as the concept stage enlarges its patches to the input size.
    """
    world = world or DemoWorld(128)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DemoNet(num_classes=len(CLASS_NAMES))
    part_head = torch.nn.Conv2d(model.num_features, len(PART_NAMES) + 1, 1)
    params = list(model.parameters()) + list(part_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=4e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps, pct_start=0.2)
    per_epoch = epoch_per_class * len(CLASS_NAMES) // batch
    step, epoch = 0, 0
    while step < steps:
        images, labels, shares, weights = _draw_training(world, epoch_per_class, 1000 * (seed + 1) + epoch, zoom)
        order = torch.randperm(len(labels), generator=generator)
        model.train()
        for b in range(min(per_epoch, steps - step)):
            idx = order[b * batch:(b + 1) * batch]
            features = model.forward_features(images[idx])
            logits, w = model.forward_head(features), weights[idx]
            per_image = F.cross_entropy(logits, labels[idx], reduction="none")
            loss = (per_image * w).sum() / w.sum().clamp(min=1)
            if (w == 0).any():  # a window of clutter: no evidence for any class
                loss = loss + background_weight * logits[w == 0].pow(2).mean()
            if part_weight:
                loss = loss + part_weight * F.cross_entropy(part_head(features), shares[idx])
            if quiet_weight:  # features stay low where there is no part
                background = (shares[idx, -1] > 0.95).unsqueeze(1)
                cells = (background.sum() * features.shape[1]).clamp(min=1)
                loss = loss + quiet_weight * (features * background).sum() / cells
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % 20 == 0:
                _logger.info("seed %d step %d/%d loss %.4f", seed, step, steps, loss.item())
        epoch += 1
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("weights"))
    parser.add_argument("--seeds", type=int, nargs=2, default=(0, 1), help="seeds of model a and b")
    parser.add_argument("--steps", type=int, default=108)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    world = DemoWorld(128)
    for which, seed in zip(("a", "b"), args.seeds):
        start = time.perf_counter()
        model = train_one(seed, steps=args.steps, batch=args.batch, world=world)
        seconds = time.perf_counter() - start
        accuracy = evaluate(model, world)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        path = atomic_write_bytes(args.out / WEIGHT_FILES[which], buffer.getvalue())
        _logger.info("model %s: seed %d, %.1f s, held-out accuracy %.4f, %s (%d bytes)",
                     which, seed, seconds, accuracy, path, len(buffer.getvalue()))


if __name__ == "__main__":
    main()
