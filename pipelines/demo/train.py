"""Train the two demo networks and write their weights: ``python -m pipelines.demo.train``.

How the shipped weights were made
---------------------------------
Command: ``python -m pipelines.demo.train`` (defaults: ``--seeds 0 1``,
``--steps 72``, ``--batch 64``, ``--threads 2``), torch 2.14.1 CPU.
Model ``a`` uses seed 0, model ``b`` seed 1. The seed fixes the weight
initialisation, the batch order and the training images: every epoch is a
fresh draw of 192 images per class (1152 images, 18 steps) from
``DemoWorld(128)`` with seed ``1000 * (seed + 1) + epoch``, 72 AdamW steps
(one-cycle, max lr 4e-3), no other augmentation (the world already varies
position, scale, aspect, mirroring, colours and clutter). Held-out accuracy is
measured on ``DemoWorld(128).dataset(100, seed=10_000)`` (600 images, a seed
never used for training). Run on 2026-11-24, 2 shared CPU cores:

    model a (seed 0): 61 s training, held-out accuracy 1.0000 (600/600)
    model b (seed 1): 55 s training, held-out accuracy 1.0000 (600/600)
    whole command: 2 min 07 s wall; two runs gave byte-identical files.

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

import torch
import torch.nn.functional as F

from ..io import atomic_write_bytes
from .load import WEIGHT_FILES
from .model import DEMO_MEAN, DEMO_STD, DemoNet
from .parts import CLASS_NAMES
from .world import DemoWorld

__all__ = ["evaluate", "main", "train_one"]

_logger = logging.getLogger(__name__)
HELD_OUT_SEED = 10_000


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


def train_one(seed: int, *, steps: int, batch: int, epoch_per_class: int = 192,
              world: DemoWorld | None = None) -> DemoNet:
    """Train one :class:`DemoNet` from scratch (one-cycle AdamW, fresh images each epoch)."""
    world = world or DemoWorld(128)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DemoNet(num_classes=len(CLASS_NAMES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps, pct_start=0.2)
    per_epoch = epoch_per_class * len(CLASS_NAMES) // batch
    step, epoch = 0, 0
    while step < steps:
        images, labels = _draw(world, epoch_per_class, 1000 * (seed + 1) + epoch)
        order = torch.randperm(len(labels), generator=generator)
        model.train()
        for b in range(min(per_epoch, steps - step)):
            idx = order[b * batch:(b + 1) * batch]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
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
    parser.add_argument("--steps", type=int, default=72)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    world = DemoWorld(128)
    for which, seed in zip(WEIGHT_FILES, args.seeds):
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
