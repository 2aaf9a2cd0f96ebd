"""What the demo's class pages show, checked against the demo world's ground truth.

Reads a ``concept-lens demo`` run folder (its ``class.json`` records and
concept banks) and redraws each class's images from the world with their exact
part masks. Per class it reports:

- the % of the logit of each concept, by rank, and how many reach 15%;
- each concept's dominant ground-truth part and purity (the share of its top 10
  crops that show that part, :func:`pipelines.evaluate.concept_purity`);
- whether its map points at that part: on the images of the card's map strip
  (where the concept is strongest), is the map's peak within 4 px of the part
  (a pointing game)?
- the deletion areas of the class record: ranking vs random order vs random pixels.

It prints a Markdown table and the two counts the issue asks for (classes where
the ranking beats random order; classes with at least two concepts >= 15% on
different parts), and writes ``demo_pages.json`` into the run folder.

Usage::

    concept-lens -q demo --out /tmp/demo && python benchmarks/demo_pages.py /tmp/demo
    concept-lens -q demo --arch vit --out /tmp/demo-vit && python benchmarks/demo_pages.py /tmp/demo-vit
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from concepts import ConceptBank, ModelSplit, concept_maps
from pipelines.demo import CLASS_NAMES, DEMO_INPUT_SIZE, PART_NAMES, DemoWorld
from pipelines.demo.run import DEMO_CONFIG, DEMO_IMAGES_SEED
from pipelines.evaluate import concept_purity
from pipelines.io import save
from pipelines.models import demo_model

IMPORTANT_PCT = 15.0
TOP_CROPS = 10
POINTING_TOLERANCE_PX = 4


def _points_at(split: ModelSplit, bank: ConceptBank, concept: int, images: torch.Tensor, masks: np.ndarray,
               part: int, strip: int) -> tuple[int, int]:
    """``(hits, tries)``: on the ``strip`` images where ``concept`` is strongest, peaks on the part's mask."""
    strongest = np.argsort(-bank.image_codes[:, concept], kind="stable")[:strip]
    maps = concept_maps(split, bank, images[strongest])[:, concept]
    hits = 0
    for j, i in enumerate(strongest):
        peak = np.unravel_index(int(maps[j].argmax()), maps[j].shape)
        hits += bool(binary_dilation(masks[i, part], iterations=POINTING_TOLERANCE_PX)[peak])
    return hits, len(strongest)


def class_row(run_dir: Path, class_index: int, split: ModelSplit, world: DemoWorld, strip: int) -> dict:
    """The numbers of one class page of the demo run in ``run_dir``."""
    folder = Path(run_dir) / "classes" / f"{class_index:04d}"
    record = json.loads((folder / "class.json").read_text())
    bank = ConceptBank.load(folder / "bank")
    raw, masks = world.sample(class_index, max(int(Path(p).stem) for p in bank.image_paths) + 1,
                              seed=DEMO_IMAGES_SEED)
    used = [int(Path(p).stem) for p in bank.image_paths]  # the demo writes image i as <i:04d>.png
    raw, masks = raw[used], masks[used]
    images = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255)
    top = bank.top_crops(TOP_CROPS)
    purity = concept_purity([bank.crop_boxes[t] for t in top], [bank.crop_image_index[t] for t in top], masks,
                            PART_NAMES)
    concepts = []
    for entry in record["concepts"]:
        concept = entry["concept_id"]
        part = purity["labels"][concept]
        hits, tries = (_points_at(split, bank, concept, images, masks, PART_NAMES.index(part), strip)
                       if part in PART_NAMES else (0, 0))
        concepts.append({"rank": entry["rank"], "importance_pct": entry["importance_pct"], "part": part,
                         "purity": purity["per_concept"][concept], "map_hits": hits, "map_tries": tries})
    important = [c for c in concepts if c["importance_pct"] >= IMPORTANT_PCT]
    deletion, insertion, fidelity = record["deletion"], record["insertion"], record["fidelity"]
    return {
        "class": CLASS_NAMES[class_index],
        "concepts": concepts,
        "important": len(important),
        "different_parts": len({c["part"] for c in important} - {"background"}) >= 2,
        "purity": purity["mean"],
        "auc": [deletion[key] for key in ("auc_ranking", "auc_random_order", "auc_random_regions")],
        "insertion": [insertion[key] for key in ("auc_ranking", "auc_random_order", "auc_random_regions")],
        "c_deletion": [fidelity["c_deletion"]["auc_ranking"], fidelity["c_deletion"]["auc_random_order"]],
        "c_insertion": [fidelity["c_insertion"]["auc_ranking"], fidelity["c_insertion"]["auc_random_order"]],
        "c_mufidelity": fidelity["c_mufidelity"],
    }


def table(rows: list[dict]) -> str:
    """The Markdown table and the two counts."""
    lines = ["| class | % of logit by rank | # >= 15% | >= 15% concepts: part (purity, map peak on part) "
             "| deletion: ranking / random order / random regions | insertion: the same | C-Deletion: ranking / "
             "random | C-Insertion: ranking / random | C-μFidelity |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        shares = ", ".join(f"{c['importance_pct']:.0f}" for c in row["concepts"])
        parts = ", ".join(f"{c['part']} ({c['purity']:.1f}, {c['map_hits']}/{c['map_tries']})"
                          for c in row["concepts"] if c["importance_pct"] >= IMPORTANT_PCT)
        ranking, order, regions = row["auc"]
        best = "**" if ranking < order else ""
        ins, c_del, c_ins = row["insertion"], row["c_deletion"], row["c_insertion"]
        lines.append(f"| {row['class']} | {shares} | {row['important']} | {parts} | {best}{ranking:.3f}{best} / "
                     f"{order:.3f} / {regions:.3f} | {ins[0]:.3f} / {ins[1]:.3f} / {ins[2]:.3f} | {c_del[0]:.3f} / "
                     f"{c_del[1]:.3f} | {c_ins[0]:.3f} / {c_ins[1]:.3f} | {row['c_mufidelity']:.2f} |")
    wins = sum(row["auc"][0] < row["auc"][1] for row in rows)
    counts = {
        "deletion beats random regions": sum(r["auc"][0] < r["auc"][2] for r in rows),
        "insertion beats random order": sum(r["insertion"][0] > r["insertion"][1] for r in rows),
        "insertion beats random regions": sum(r["insertion"][0] > r["insertion"][2] for r in rows),
        "C-Deletion beats random order": sum(r["c_deletion"][0] < r["c_deletion"][1] for r in rows),
        "C-Insertion beats random order": sum(r["c_insertion"][0] > r["c_insertion"][1] for r in rows),
    }
    spread = sum(row["important"] >= 2 and row["different_parts"] for row in rows)
    lines.append("")
    lines.append(f"The ranking beats random order in {wins} of {len(rows)} classes; {spread} of {len(rows)} have at "
                 f"least two concepts >= {IMPORTANT_PCT:.0f}% of the logit on different parts; "
                 + "; ".join(f"{name} in {count} of {len(rows)}" for name, count in counts.items()) + ".")
    return "\n".join(lines)


def run_network(run_dir: Path) -> str:
    """The demo network the run explained (``"a"``, or ``"vit"`` after ``demo --arch vit``), from its run.json."""
    model_id = json.loads((Path(run_dir) / "run.json").read_text())["model_id"]
    if not model_id.startswith("demo/"):
        raise ValueError(f"`run_dir` {run_dir} is not a `concept-lens demo` run (its model is {model_id!r}).")
    return model_id.removeprefix("demo/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished `concept-lens demo` run folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split, world = demo_model(run_network(args.run_dir)), DemoWorld(DEMO_INPUT_SIZE)
    rows = [class_row(args.run_dir, c, split, world, DEMO_CONFIG.map_strip) for c in range(len(CLASS_NAMES))]
    print(table(rows))
    save(rows, args.run_dir / "demo_pages.json")


if __name__ == "__main__":
    main()
