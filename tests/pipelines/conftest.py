"""Fixtures for pipelines tests: a fake finished run with tiny PNGs."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from pipelines.run.record import RECORD_SCHEMA

EVIL_NAME = "<script>alert(1)</script>"
FAKE_CLASSES = [(3, "lamp", "n03637318"), (7, EVIL_NAME, None), (12, "tabby cat", "n02123045")]
K = 3
N_CROPS = 4
N_INVERSIONS = 2


def _png(path: Path, seed: int, *, alpha: bool = False, size: int = 16) -> str:
    """Write a small PNG of coloured 1/f noise (cloud-like) and return its name."""
    rng = np.random.default_rng(seed)
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    spectrum = np.fft.fft2(rng.normal(size=(3, size, size))) / np.maximum(freq, 1 / size) ** 1.6
    rgb = np.real(np.fft.ifft2(spectrum)).transpose(1, 2, 0)
    rgb = rgb @ rng.uniform(0.2, 1.0, (3, 3))  # correlated colours
    rgb = (rgb - rgb.min(axis=(0, 1))) / np.ptp(rgb, axis=(0, 1)).clip(1e-8)
    channels = [0.1 + 0.85 * rgb]
    if alpha:
        y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        channels.append(np.clip(1.3 - 2.2 * np.hypot(x - 0.5, y - 0.5), 0, 1)[..., None])
    array = (np.concatenate(channels, axis=-1) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="RGBA" if alpha else "RGB").save(path)
    return path.name


def write_fake_class(run_dir: Path, index: int, name: str, wnid: str | None,
                     *, size: int = 16) -> Path:
    """Write ``classes/<index:04d>/`` with images and a class.json; return the folder."""
    folder = run_dir / "classes" / f"{index:04d}"
    others = [c for c in FAKE_CLASSES if c[0] != index]
    pcts = [52.5, 30.25, 17.25]
    concepts = []
    for rank in range(K):
        seed = index * 100 + rank * 10
        stem = f"concepts/{rank:02d}"
        _png(folder / f"{stem}_viz.png", seed, size=size)
        _png(folder / f"{stem}_alpha.png", seed, alpha=True, size=size)
        _png(folder / f"{stem}_mosaic.png", seed + 1, size=size)
        crops = []
        for j in range(N_CROPS):
            _png(folder / f"{stem}_crop_{j}.png", seed + 2 + j, size=size)
            crops.append(f"{stem}_crop_{j}.png")
        aligned = [{"class_index": index, "class_name": name, "cosine": 0.36}]
        aligned += [{"class_index": i, "class_name": n, "cosine": 0.1 - 0.01 * r}
                    for r, (i, n, _) in enumerate(others)]
        aligned.append({"class_index": 999, "class_name": "not in run", "cosine": 0.01})
        concepts.append({
            "rank": rank, "concept_id": (rank * 2 + 1) % K, "importance_pct": pcts[rank],
            "sobol": 0.41 - 0.1 * rank,
            "visualization": f"{stem}_viz.png", "visualization_alpha": f"{stem}_alpha.png",
            "mosaic": f"{stem}_mosaic.png", "top_crops": crops,
            "aligned_classes": aligned,
        })
    inversions = []
    for j in range(N_INVERSIONS):
        _png(folder / f"inversions/{j:02d}_ref.png", index + 500 + j, size=size)
        _png(folder / f"inversions/{j:02d}_inv.png", index + 600 + j, size=size)
        inversions.append({"reference": f"inversions/{j:02d}_ref.png",
                           "inversion": f"inversions/{j:02d}_inv.png",
                           "cosine": 0.93 - 0.01 * j, "source": f"images/img_{j}.jpg", "probability": 0.9})
    data = {
        "class_index": index, "class_name": name, "wnid": wnid, "model_id": "fake-resnet",
        "layer": "layer4", "n_images": 40, "n_crops": 640, "n_concepts": K, "reconstruction_error": 0.25,
        "schema": RECORD_SCHEMA,
        "skipped": [{"path": f"bad_{index}.jpg", "reason": "cannot identify image file"},
                    {"path": "<b>odd</b>.jpg", "reason": "truncated <file>"}],
        "concepts": list(reversed(concepts)),  # stored out of order on purpose
        "inversions": inversions, "status": "done",
    }
    (folder / "class.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return folder


@pytest.fixture
def fake_spec() -> SimpleNamespace:
    """What the fake runs contain (tests import nothing from conftest)."""
    return SimpleNamespace(evil_name=EVIL_NAME, classes=FAKE_CLASSES, k=K,
                           n_crops=N_CROPS, n_inversions=N_INVERSIONS, n_images=40,
                           n_skipped=2)


@pytest.fixture
def make_fake_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_fake_run(size=16)`` writes ``tmp_path/run`` and returns it."""

    def make(size: int = 16) -> Path:
        run_dir = tmp_path / "run"
        for index, name, wnid in FAKE_CLASSES:
            write_fake_class(run_dir, index, name, wnid, size=size)
        return run_dir

    return make


@pytest.fixture
def fake_run(make_fake_run: Callable[..., Path]) -> Path:
    """A finished run folder with 3 classes (one named like an HTML tag)."""
    return make_fake_run()
