"""Crop feature extraction against the model's plain inference throughput.

``concepts.extract_features`` on a CRAFT crop grid (crops cut and resized
batch by batch) versus ``model(x)`` on ready-made batches of the same size,
in one run on one device (ResNet50; random weights are fine for timing).
Target: ratio >= 0.8.

    python benchmarks/bench_features.py --device cuda --images 300
    python benchmarks/bench_features.py --device cpu --images 8 --batch-size 32
"""
from __future__ import annotations

import argparse
import datetime
import time

import torch
import torchvision

from concepts import extract_crops, extract_features, split_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().to(device)
    split = split_model(model, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=224)
    images = torch.rand(args.images, 3, 224, 224)
    crops = extract_crops(images, patch_size=args.patch_size, out_size=224)

    plain_model = model.to(memory_format=torch.channels_last) if cuda else model
    x = torch.rand(args.batch_size, 3, 224, 224, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    n_batches = max(1, len(crops) // args.batch_size)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        plain_model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(n_batches):
            plain_model(x)
        _sync(device)
    plain = n_batches * args.batch_size / (time.perf_counter() - start)

    extract_features(split, images[:2], batch_size=2, device=device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    extract_features(split, crops, batch_size=args.batch_size, device=device)
    _sync(device)
    ours = len(crops) / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"device: {name}; date: {datetime.date.today()}; {args.images} images x {len(crops) // args.images} crops "
          f"of {args.patch_size} px, batch {args.batch_size}")
    print("| measure | crops/s | ratio |")
    print("|---|---|---|")
    print(f"| ResNet50 plain inference, ready batches | {plain:,.0f} | 1.00 |")
    print(f"| concepts.extract_features on the crop grid | {ours:,.0f} | {ours / plain:.2f} |")


if __name__ == "__main__":
    main()
