"""Quality of MaCo vs Fourier vs pixels on the demo world (DESIGN.md section 6), CPU-able.

Renders one logit visualization per demo class on demo model ``a`` for each
seed (same seeds and budgets for every method), then scores:

- transferability: top-1 of the independently trained demo model ``b`` on
  the whole canvases (top-5 is printed too, but with 6 classes it says little);
- plausibility: 1-NN cosine distance in ``b``'s pooled features to real demo
  images of the class (lower is better);
- baselines: real held-out images, uniform noise, real images against
  another class's references;
- concept purity of the concepts extracted on model ``a`` (``concepts``).

Writes ``quality_demo.md``, ``quality_demo.json`` and a small sheet of the
visualizations (``quality_demo_sheet.png``: rows maco / fourier / pixels,
columns the classes, first seed) to ``--out``.

Usage::

    python benchmarks/quality_demo.py     # 64 steps x 8 crops, seeds 0 1: ~100 s on one shared CPU core
    python benchmarks/quality_demo.py --steps 4 --crops 2 --seeds 0 --out /tmp/q   # smoke test
"""
from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.demo import CLASS_NAMES
from pipelines.demo.experiment import evaluate_demo
from pipelines.io import atomic_write_text, save, to_pil


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(result: dict, command: str, seconds: float) -> str:
    """The two tables (metrics, concept purity) as markdown."""
    c = result["config"]
    n = len(c["seeds"]) * len(CLASS_NAMES)
    lines = [
        f"### Quality on the demo world ({datetime.date.today()}, CPU: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__})",
        "",
        f"`{command}` — {seconds:.0f} s wall. Rendered on demo model a, {n} logit visualizations per method "
        f"({len(CLASS_NAMES)} classes x seeds {c['seeds']}), {c['steps']} steps x {c['crops']} crops, "
        f"{c['image_size']} px canvas, crop area N{tuple(c['crop_size'])}; each method at its default lr "
        f"(maco 1.0, fourier/pixels 0.05). Transferability: top-1 of the independently trained model b on the whole "
        f"canvas. Plausibility: 1-NN cosine distance (1 - cos) in b's pooled features to {c['n_reference']} real "
        f"images per class (lower is better).",
        "",
        "| method | transfer top-1 (b) | top-5 (b) | self top-1 (a) | plausibility | final logit (a) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {_fmt(m['top1'], 2)} | {_fmt(m['top5'], 2)} | {_fmt(m['self_top1'], 2)} | "
                     f"{_fmt(m['plausibility'])} | {_fmt(m['final_score'], 2)} | {m['seconds']:.0f} |")
    b = result["baselines"]
    lines += [
        f"| real held-out images ({c['n_heldout']}/class) | {_fmt(b['real']['top1'], 2)} | "
        f"{_fmt(b['real']['top5'], 2)} | | {_fmt(b['real']['plausibility'])} | | |",
        f"| uniform noise | {_fmt(b['noise']['top1'], 2)} | | | {_fmt(b['noise']['plausibility'])} | | |",
        f"| real images vs another class's references | | | | {_fmt(b['other_class']['plausibility'])} | | |",
    ]
    purity = result.get("concept_purity")
    if purity:
        pc = purity.get("config", {})
        lines += [
            "",
            f"Concept purity (model a, {pc.get('n_concepts')} concepts per class from {pc.get('n_images')} images, "
            f"{pc.get('patch_size')} px patches on {pc.get('image_size')} px images, top {pc.get('top_patches')} "
            f"patches per concept; dominant part = largest mask area in the patch, 'background' if parts cover "
            f"< 10%): mean **{_fmt(purity['mean'])}**; the same with random patches: "
            f"{_fmt(purity.get('random_patches'))}.",
            "",
            "| class | purity | concepts' parts (purity, % of logit) |",
            "|---|---|---|",
        ]
        for name, p in purity.get("per_class", {}).items():
            parts = ", ".join(f"{lab} ({_fmt(v, 2)}, {imp:+.0f}%)" for lab, v, imp
                              in zip(p["labels"], p["per_concept"], p["importance_pct"]) if lab is not None)
            lines.append(f"| {name} | {_fmt(p['mean'], 2)} | {parts} |")
    return "\n".join(lines) + "\n"


def sheet(result: dict, tile: int = 96) -> np.ndarray:
    """``(rows * tile, 6 * tile, 3)`` uint8: one row per method, first seed's images."""
    rows = []
    for m in result["methods"].values():
        images = m["images"][: len(CLASS_NAMES)]
        images = torch.nn.functional.interpolate(images, size=tile, mode="bilinear", antialias=True)
        rows.append(torch.cat(list(images), dim=2))
    return np.asarray(to_pil(torch.cat(rows, dim=1))) & 0xFC  # 6 bits per channel: a smaller PNG, no visible change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-concepts", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core CPU: 2 threads oversubscribe)")
    parser.add_argument("--no-purity", action="store_true", help="skip concept extraction")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/quality_demo.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k not in ("out", "no_purity")) + (" --no-purity" if args.no_purity else "")
    start = time.perf_counter()
    result = evaluate_demo(steps=args.steps, image_size=args.image_size, crops=args.crops, seeds=args.seeds,
                           n_concepts=args.n_concepts, compute_purity=not args.no_purity, progress=False)
    seconds = time.perf_counter() - start
    text = markdown(result, command, seconds)
    print(text)
    save(sheet(result), args.out / "quality_demo_sheet.png")
    for m in result["methods"].values():
        m.pop("images")
    save({**result, "command": command, "wall_seconds": seconds}, args.out / "quality_demo.json")
    atomic_write_text(args.out / "quality_demo.md", text)


if __name__ == "__main__":
    main()
