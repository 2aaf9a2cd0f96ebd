"""Crop feature extraction against the model's plain inference throughput.

``concepts.extract_features`` on a CRAFT crop grid (crops cut and resized batch by batch) versus ``model(x)`` on
ready-made batches of the same size, in one run on one device (ResNet50; random weights are fine for timing),
each on its own copy of the model and in the same precision and memory format (bf16 autocast and channels_last
on CUDA, as ``extract_features`` does). Target: ratio >= 0.8.

    python benchmarks/bench_features.py --device cuda --images 300 --out benchmarks/results/gpu
    python benchmarks/bench_features.py --device cpu --images 8 --batch-size 32
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torchvision
from _report import synchronize, write_report

from concepts import extract_crops, extract_features, split_model
from maco.device import on_cuda_by_default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=224, help="side of the images and of the model input")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write features.md and features.json here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = channels_last = on_cuda_by_default(None, device)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().to(device)
    size = args.input_size
    images = torch.rand(args.images, 3, size, size)
    crops = extract_crops(images, patch_size=args.patch_size, out_size=size)

    plain_model = copy.deepcopy(model).requires_grad_(False)
    x = torch.rand(args.batch_size, 3, size, size, device=device)
    if channels_last:
        plain_model = plain_model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    n_batches = max(1, len(crops) // args.batch_size)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        plain_model(x)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n_batches):
            plain_model(x)
        synchronize(device)
    plain = n_batches * args.batch_size / (time.perf_counter() - start)

    split = split_model(copy.deepcopy(model), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=size)
    extract_features(split, images[:2], batch_size=2, device=device)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    extract_features(split, crops, batch_size=args.batch_size, device=device)
    synchronize(device)
    ours = len(crops) / (time.perf_counter() - start)
    table = "\n".join([
        f"{args.images} images x {len(crops) // args.images} crops of {args.patch_size} px at {size} px, batch "
        f"{args.batch_size}, {'bf16 autocast, channels_last' if amp else 'float32, contiguous'}",
        "",
        "| measure | crops/s | ratio |",
        "|---|---|---|",
        f"| ResNet50 plain inference, ready batches | {plain:,.1f} | 1.00 |",
        f"| concepts.extract_features on the crop grid | {ours:,.1f} | {ours / plain:.2f} |",
    ])
    figures = dict(crops=len(crops), plain_crops_s=plain, extract_features_crops_s=ours, ratio=ours / plain,
                   amp=amp, channels_last=channels_last)
    write_report("features", table, device=device, settings=vars(args), figures=figures, out=args.out)


if __name__ == "__main__":
    main()
