"""One real class through ``explain_class`` in memory, as a notebook user runs it: offline EfficientNet-Lite0 on an
imagenette-val class, a short MaCo budget; prints the record's checks and stage times, draws two plots from the
in-memory pictures and writes the notebook display.

Usage::

    python benchmarks/explain_real.py                        # tench, 40 photos
    python benchmarks/explain_real.py --wnid n03028079 --class-index 497 --out /tmp/explain_real
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from imagenette_features import IMAGENETTE, efficientnet_lite0  # noqa: E402

from maco import RenderSettings  # noqa: E402
from pipelines import RunConfig, explain_class  # noqa: E402
from pipelines.run import plots  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wnid", default="n01440764")
    parser.add_argument("--class-index", type=int, default=0)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("/tmp/explain_real"))
    args = parser.parse_args()
    split = efficientnet_lite0()
    viz = RenderSettings(steps=args.steps, image_size=224, crops=6, seed=0)
    config = RunConfig(visualization=viz, inversion=replace(viz, crop_size=(0.8, 0.1)), max_images=args.images,
                       inversions=2, map_images=6, cluster_images=40)
    start = time.perf_counter()
    ex = explain_class(split, IMAGENETTE / args.wnid, args.class_index, config=config, progress=False)
    r, d, f = ex.record, ex.record.deletion, ex.record.fidelity
    print(f"{r.class_name}: {time.perf_counter() - start:.0f} s, {r.n_images} images, {r.n_concepts} concepts, "
          f"completeness {r.completeness}; deletion {d.auc_ranking:.3f} vs {d.auc_random_order:.3f} random order, "
          f"{d.auc_random_regions:.3f} random regions; C-Deletion {f.c_deletion.auc_ranking:.3f} vs "
          f"{f.c_deletion.auc_random_order:.3f}")
    print("seconds per stage:", r.timings)
    print("% of logit by rank:", [round(c.importance_pct, 2) for c in r.concepts])
    args.out.mkdir(parents=True, exist_ok=True)
    plots.plot_top_crops(r, ex.pictures, n=5).savefig(args.out / "top_crops.png", dpi=60)
    ax = plots.plot_image_concepts(r, ex.pictures, 0, ax=plt.figure(figsize=(5, 4)).gca())
    ax.figure.savefig(args.out / "image_concepts.png", dpi=80, bbox_inches="tight")
    (args.out / "display.html").write_text(ex._repr_html_())
    print(f"plots and the notebook display in {args.out}")


if __name__ == "__main__":
    main()
