"""pipelines.site.gallery at ImageNet scale: a generated run of many classes, not 1000 real class runs.

:func:`write_synthetic_run` writes ``classes/<idx:04d>/`` folders that look like
finished demo classes (same number of concepts, crops and inversions, a valid
:class:`pipelines.run.record.ClassRecord`, real ImageNet names and wnids) with
tiny WebP pictures (as a class run writes them), so the gallery's per-class work (reading records, checking images,
rendering and writing pages, thumbnails) is the real one while the pictures
cost nothing. The tests use a few hundred classes; the 1000-class figures in
BENCHMARKS.md come from running this module as a script::

    python -m tests.pipelines.test_gallery_scale --classes 1000 --viz-size 256 --out /tmp/run1000
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from concepts import imagenet_classes
from pipelines.site.gallery import build_gallery
from pipelines.run.record import RECORD_SCHEMA, ClassRecord

SCALE_CLASSES = 250  # classes in the tests; the benchmark runs 1000
INDEX_LIMIT = 1_000_000  # bytes of index.html at 1000 classes


def _picture_bytes(seed: int, size: int, *, alpha: bool = False) -> bytes:
    """A WebP of smooth colour noise (1/f, like a visualization), so its size and decoding cost are realistic."""
    rng = np.random.default_rng(seed)
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    spectrum = np.fft.fft2(rng.normal(size=(4 if alpha else 3, size, size))) / np.maximum(freq, 1 / size) ** 1.6
    array = np.real(np.fft.ifft2(spectrum)).transpose(1, 2, 0)
    array = (255 * (array - array.min(axis=(0, 1))) / np.ptp(array, axis=(0, 1)).clip(1e-8)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGBA" if alpha else "RGB").save(buffer, format="WEBP", quality=85)
    return buffer.getvalue()


def _has_deletion() -> bool:
    return any(f.name == "deletion" for f in dataclasses.fields(ClassRecord))


def _deletion(index: int, k: int) -> dict:
    """A deletion entry shaped like :class:`pipelines.run.deletion.ImageCurves`; the ranking wins 2 classes in 3."""
    wins = index % 3 != 0
    ranking = [0.9 * (1 - j / k) ** (3 if wins else 0.5) for j in range(k + 1)]
    order = [0.9 * (1 - j / k) for j in range(k + 1)]
    pixels = [0.9 - 0.1 * j / k for j in range(k + 1)]

    def auc(curve: list[float]) -> float:
        return float(np.trapz(curve, dx=1 / k)) if hasattr(np, "trapz") else float(np.trapezoid(curve, dx=1 / k))

    return {"ranking": ranking, "random_order": order, "random_regions": pixels,
            "auc_ranking": auc(ranking), "auc_random_order": auc(order), "auc_random_regions": auc(pixels),
            "share": 0.1, "seeds": 3, "n_images": 6, "fill": "blur"}


def write_synthetic_run(run_dir: Path, n_classes: int, *, k: int = 5, top_crops: int = 10, inversions: int = 2,
                        size: int = 12, viz_size: int | None = None, deletion: bool | None = None) -> Path:
    """Write ``n_classes`` finished-looking class folders (the demo's layout) under ``run_dir``; return it.

    Class ``i`` gets ImageNet's index, name and wnid of ``i`` (long names, commas, apostrophes included),
    ``k`` concepts with a visualization, its alpha, a mosaic and ``top_crops`` crops, and ``inversions``
    reference/inversion pairs: ``k * (3 + top_crops) + 2 * inversions`` WebPs of ``size`` px; the top concept's
    visualization, which the index thumbnails, is ``viz_size`` px (default ``size``). ``deletion``
    adds deletion curves to the records (default: when :class:`ClassRecord` has the field).
    """
    if deletion is None:
        deletion = _has_deletion()
    table = imagenet_classes()
    plain = [_picture_bytes(s, size) for s in range(8)]
    alpha = [_picture_bytes(s, size, alpha=True) for s in range(8)]
    top = [_picture_bytes(s, viz_size) for s in range(8)] if viz_size else plain
    for index in range(n_classes):
        folder = run_dir / "classes" / f"{index:04d}"
        (folder / "concepts").mkdir(parents=True, exist_ok=True)
        (folder / "inversions").mkdir(exist_ok=True)
        files: dict[str, bytes] = {}
        concepts = []
        for rank in range(k):
            stem = f"concepts/{rank:02d}"
            files[f"{stem}_viz.webp"] = (top if rank == 0 else plain)[(index + rank) % 8]
            files[f"{stem}_alpha.webp"] = alpha[(index + rank) % 8]
            files[f"{stem}_mosaic.webp"] = plain[(index + rank + 1) % 8]
            crops = [f"{stem}_crop_{j}.webp" for j in range(top_crops)]
            files.update({crop: plain[(index + j) % 8] for j, crop in enumerate(crops)})
            aligned = [{"class_index": (index + j) % 1000, "class_name": table.names[(index + j) % 1000],
                        "cosine": 0.4 - 0.05 * j} for j in range(5)]
            concepts.append({"rank": rank, "concept_id": (rank * 3) % k, "importance_pct": 60.0 / (rank + 1),
                             "sobol": 0.5 / (rank + 1), "visualization": f"{stem}_viz.webp",
                             "visualization_alpha": f"{stem}_alpha.webp", "mosaic": f"{stem}_mosaic.webp",
                             "top_crops": crops, "aligned_classes": aligned})
        pairs = []
        for j in range(inversions):
            ref, inv = f"inversions/{j:02d}_ref.webp", f"inversions/{j:02d}_inv.webp"
            files[ref], files[inv] = plain[j % 8], plain[(j + 3) % 8]
            pairs.append({"reference": ref, "inversion": inv, "cosine": 0.9, "source": f"images/img_{j}.JPEG",
                          "probability": 0.8})
        for name, data in files.items():
            (folder / name).write_bytes(data)
        record = {
            "class_index": index, "class_name": table.names[index % 1000], "wnid": table.wnids[index % 1000],
            "model_id": "torchvision/resnet50/IMAGENET1K_V2", "layer": "layer4", "n_images": 1300,
            "n_crops": 20800, "n_concepts": k, "reconstruction_error": 0.31, "schema": RECORD_SCHEMA, "skipped": [],
            "concepts": concepts, "inversions": pairs, "timings": {"concepts": 4.0, "visualization": 30.0},
            "device": "cuda:0", "rank": index % 8, "files": {name: len(data) for name, data in files.items()},
            "status": "done",
        }
        if deletion:
            record["deletion"] = _deletion(index, k)
        ClassRecord.from_dict(record)  # the generated records must be valid ones
        (folder / "class.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return run_dir


def _folder_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in (run_dir / "classes").rglob("*") if p.is_file())


def _mtimes(run_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.html")}


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory) -> Path:
    run_dir = write_synthetic_run(tmp_path_factory.mktemp("scale") / "run", SCALE_CLASSES)
    build_gallery(run_dir)
    return run_dir


def test_index_stays_small(scale_run):
    size = (scale_run / "index.html").stat().st_size
    assert size * 1000 / SCALE_CLASSES < INDEX_LIMIT * 0.8, size  # room to spare at 1000 classes


def test_index_thumbnails_are_lazy_and_sized(scale_run):
    raw = (scale_run / "index.html").read_text(encoding="utf-8")
    images = re.findall(r"<img [^>]*>", raw)
    assert len(images) == SCALE_CLASSES
    for tag in images:
        assert 'loading="lazy"' in tag and 'decoding="async"' in tag, tag
        width, height = re.search(r'width="(\d+)"', tag), re.search(r'height="(\d+)"', tag)
        assert width and height, tag
        src = re.search(r'src="([^"]+)"', tag).group(1)
        with Image.open(scale_run / src) as thumb:
            assert thumb.size == (int(width.group(1)), int(height.group(1)))


def test_search_index_covers_every_class(scale_run):
    raw = (scale_run / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="search-index">(.*?)</script>', raw, re.S)
    assert match, "index.html holds no search index"
    entries = json.loads(match.group(1))
    assert len(entries) == SCALE_CLASSES
    table = imagenet_classes()
    by_index = {entry[0]: entry for entry in entries}
    assert set(by_index) == set(range(SCALE_CLASSES))
    assert by_index[217] == [217, table.names[217], table.wnids[217]]
    assert len(match.group(1).encode()) < 60 * SCALE_CLASSES  # small: names and wnids, no markup


def test_rebuild_rewrites_nothing_unchanged(scale_run):
    before = _mtimes(scale_run)
    thumbs = {p: p.stat().st_mtime_ns for p in (scale_run / "assets" / "thumbs").iterdir()}
    time.sleep(0.01)
    build_gallery(scale_run)
    assert _mtimes(scale_run) == before
    assert {p: p.stat().st_mtime_ns for p in (scale_run / "assets" / "thumbs").iterdir()} == thumbs


def test_rebuild_rewrites_only_the_changed_class(scale_run):
    meta = scale_run / "classes" / "0042" / "class.json"
    data = json.loads(meta.read_text())
    data["class_name"] = "a renamed class"
    meta.write_text(json.dumps(data))
    before = _mtimes(scale_run)
    time.sleep(0.01)
    build_gallery(scale_run)
    after = _mtimes(scale_run)
    changed = {p.relative_to(scale_run).as_posix() for p in after if after[p] != before.get(p)}
    assert changed == {"classes/0042/index.html", "index.html"}  # other pages name class 42 from their own records
    assert "a renamed class" in (scale_run / "index.html").read_text(encoding="utf-8")


def _measure(n_classes: int, out: Path | None, viz_size: int | None) -> dict:
    run_dir = out or Path(tempfile.mkdtemp(prefix="gallery-scale-")) / "run"
    start = time.perf_counter()
    write_synthetic_run(run_dir, n_classes, viz_size=viz_size)
    generated = time.perf_counter() - start
    timings = []
    for _ in range(3):  # first build (pages and thumbnails made), then two rebuilds of an unchanged run
        start = time.perf_counter()
        build_gallery(run_dir)
        timings.append(time.perf_counter() - start)
    per_class = _folder_bytes(run_dir) / n_classes
    return {"classes": n_classes, "generate_s": round(generated, 1), "first_build_s": round(timings[0], 2),
            "rebuild_s": [round(t, 2) for t in timings[1:]],
            "index_bytes": (run_dir / "index.html").stat().st_size,
            "class_folder_bytes": round(per_class), "run_dir": str(run_dir)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Time the gallery of a generated run of many classes.")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="run folder to write (default: a new temp folder)")
    parser.add_argument("--viz-size", type=int, default=None,
                        help="px of each top visualization, which the index thumbnails (the demo's: 256)")
    args = parser.parse_args()
    print(json.dumps(_measure(args.classes, args.out, args.viz_size), indent=2))
