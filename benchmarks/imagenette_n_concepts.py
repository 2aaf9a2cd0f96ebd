"""How many concepts does a class need? The k sweep of ``--n-concepts auto`` on imagenette-val with EfficientNet-Lite0.

For each class cached by :mod:`imagenette_features` (120 photos, 1920 crops of
64 px), :func:`concepts.sweep_n_concepts` fits one bank per candidate k on the
same features (:data:`concepts.AUTO_CANDIDATES`) with the bank fitted on the
crops only (CRAFT) and on the crops and the whole images, and reports the
completeness curve, the relative reconstruction errors and the k that
``auto`` chooses (the smallest whose completeness reaches
:data:`concepts.AUTO_COMPLETENESS`). ``--factorization semi-nmf --candidates 10``
compares Semi-NMF (a signed bank) at k = 10.

Writes ``imagenette_n_concepts.md`` and ``.json`` into ``--out``.

Usage::

    python benchmarks/imagenette_features.py       # once: the cached features (about 20 min on 2 cores)
    python benchmarks/imagenette_n_concepts.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _report import write_report
from imagenette_features import DEFAULT_CACHE, WEIGHTS, cached_classes, efficientnet_lite0, load_features

from concepts import AUTO_CANDIDATES, AUTO_COMPLETENESS, FIT_ON, imagenet_classes, sweep_n_concepts
from concepts.n_concepts import FACTORIZATIONS


def class_rows(split, wnid: str, args: argparse.Namespace) -> dict:
    features = load_features(args.cache, wnid, args.images, 64)
    index = imagenet_classes().index_of[wnid]
    row = {"wnid": wnid, "class_index": index, "class_name": split.categories[index]}
    for fit_on in FIT_ON:
        start = time.perf_counter()
        sweep = sweep_n_concepts(split, features, index, candidates=tuple(args.candidates), fit_on=fit_on,
                                 factorization=args.factorization, threshold=args.threshold, progress=False)
        row[fit_on] = {**sweep.to_dict(), "seconds": round(time.perf_counter() - start, 1)}
    return row


def table(rows: list[dict]) -> str:
    ks = rows[0]["crops"]["k"]
    lines = []
    for fit_on in FIT_ON:
        lines += [f"Bank fitted on {fit_on}: completeness at each k (relative error on the crops / on the images "
                  "at k = 10), and the k `auto` chooses.", "",
                  "| class | " + " | ".join(f"k={k}" for k in ks) + " | error at k=10 | auto k | sweep s |",
                  "|---|" + "---|" * (len(ks) + 3)]
        for r in rows:
            s = r[fit_on]
            at10 = s["k"].index(10)
            lines.append(f"| {r['class_name']} | " + " | ".join(f"{c:.2f}" for c in s["completeness"])
                         + f" | {s['reconstruction_error'][at10]:.3f} / {s['reconstruction_error_images'][at10]:.3f}"
                         + f" | {s['chosen']}{'' if s['reached'] else ' (not reached)'} | {s['seconds']} |")
        chosen = [r[fit_on]["chosen"] for r in rows]
        at_10 = np.mean([r[fit_on]["completeness"][ks.index(10)] for r in rows])
        lines += ["", f"Mean completeness at k = 10: {at_10:.3f}; auto k: median {np.median(chosen):g}, "
                  f"range {min(chosen)}-{max(chosen)}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--threshold", type=float, default=AUTO_COMPLETENESS)
    parser.add_argument("--candidates", type=int, nargs="+", default=list(AUTO_CANDIDATES), help="k values (with 10)")
    parser.add_argument("--factorization", choices=tuple(FACTORIZATIONS), default="nmf")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    split = efficientnet_lite0(WEIGHTS)
    rows = []
    for wnid in cached_classes(args.cache, args.images):
        rows.append(class_rows(split, wnid, args))
        print(rows[-1]["class_name"], {f: rows[-1][f]["completeness"] for f in FIT_ON}, flush=True)
    name = "imagenette_n_concepts" + ("" if args.factorization == "nmf" else "_" + args.factorization.replace("-", "_"))
    write_report(name, table(rows), device=torch.device("cpu"),
                 settings={"candidates": args.candidates, "factorization": args.factorization,
                           "threshold": args.threshold, "images": args.images, "patch_size": 64,
                           "model": "efficientnet_lite0"},
                 figures={"classes": rows}, out=args.out)


if __name__ == "__main__":
    main()
