"""Per-class table of a finished run: what each class page proves, from its ``class.json``.

For every class of ``RUN_DIR/classes/``: images, seconds per stage, the NMF's
relative error on the crops, the top concept's share of the logit, the
concept-space fidelity (C-Deletion and C-Insertion areas of the ranking and of
random orders, C-μFidelity) and the image-space deletion and insertion areas
(ranking, random order, random regions), then how many classes the ranking
wins by each check.

Usage::

    python benchmarks/run_report.py /tmp/inv/run [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

CHECKS = (  # (name, key path, lower is better)
    ("C-Deletion < random order", ("fidelity", "c_deletion"), True, "auc_random_order"),
    ("C-Insertion > random order", ("fidelity", "c_insertion"), False, "auc_random_order"),
    ("deletion < random order", ("deletion",), True, "auc_random_order"),
    ("deletion < random regions", ("deletion",), True, "auc_random_regions"),
    ("insertion > random order", ("insertion",), False, "auc_random_order"),
    ("insertion > random regions", ("insertion",), False, "auc_random_regions"),
)


def _curves(record: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        record = record[key]
    return record


def wins(records: list[dict]) -> dict[str, int]:
    """Per check, the number of classes whose ranking beats the baseline."""
    counts = {}
    for name, path, lower, baseline in CHECKS:
        areas = [_curves(r, path) for r in records]
        counts[name] = sum((a["auc_ranking"] < a[baseline]) if lower else (a["auc_ranking"] > a[baseline])
                           for a in areas)
    return counts


def table(records: list[dict]) -> str:
    lines = ["| class | images | seconds: concepts / renders / maps+curves / fidelity / all | NMF rel. error | "
             "top concept % | C-Del ranking / random | C-Ins ranking / random | C-μF | deletion ranking / order "
             "/ regions | insertion ranking / order / regions |", "|---" * 10 + "|"]
    for r in records:
        t, f, d, i = r["timings"], r["fidelity"], r["deletion"], r["insertion"]
        seconds = (f"{t.get('concepts', 0):.0f} / {t.get('visualizations', 0) + t.get('inversions', 0):.0f} / "
                   f"{t.get('maps', 0) + t.get('deletion and insertion', 0):.0f} / "
                   f"{t.get('concept fidelity', 0):.1f} / "
                   f"{sum(t.values()):.0f}")
        lines.append(
            f"| {r['class_name']} | {r['n_images']} | {seconds} | {r['reconstruction_error']:.3f} | "
            f"{r['concepts'][0]['importance_pct']:.0f} | {f['c_deletion']['auc_ranking']:.3f} / "
            f"{f['c_deletion']['auc_random_order']:.3f} | {f['c_insertion']['auc_ranking']:.3f} / "
            f"{f['c_insertion']['auc_random_order']:.3f} | {f['c_mufidelity']:.2f} | {d['auc_ranking']:.3f} / "
            f"{d['auc_random_order']:.3f} / {d['auc_random_regions']:.3f} | {i['auc_ranking']:.3f} / "
            f"{i['auc_random_order']:.3f} / {i['auc_random_regions']:.3f} |")
    lines.append("")
    lines.append("The ranking wins: " + "; ".join(f"{name} in {count} of {len(records)}"
                                                  for name, count in wins(records).items()) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the per-class numbers here")
    args = parser.parse_args(argv)
    records = [json.loads(p.read_text()) for p in sorted(args.run_dir.glob("classes/*/class.json"))]
    print(table(records))
    if args.json is not None:
        keep = ("class_index", "class_name", "n_images", "timings", "reconstruction_error", "deletion", "insertion",
                "fidelity", "importance")
        args.json.write_text(json.dumps([{k: r[k] for k in keep} | {"top_pct": r["concepts"][0]["importance_pct"]}
                                         for r in records], indent=1) + "\n")


if __name__ == "__main__":
    main()
