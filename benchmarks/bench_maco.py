"""MaCo speed against the model's own throughput and a Horama-style loop.

Reports, in one run on one device (ResNet50, random weights are fine for timing):

1. reference: the frozen model's eager forward + input-gradient throughput at
   the batch MaCo uses (``targets * crops`` images at ``input_size``), bf16
   autocast and channels_last on CUDA;
2. MaCo (``maco.maco``, all targets in one batch): crops per second, ratio to 1;
3. seconds for ``targets`` concept (direction) visualizations in one call;
4. the same work done the way Horama does it: one target per call, fp32, the
   model not frozen (weight gradients computed), no channels_last; ratio.

Also the reference with BatchNorm folded (what MaCo runs), and with
``--compile`` the folded model with every child up to ``avgpool`` compiled
(``nn.Module.compile``, static shapes; the hooked layers stay eager): the
number that decides whether MaCo should compile (compile time reported apart).

Usage::

    python benchmarks/bench_maco.py --device cuda                 # paper settings
    python benchmarks/bench_maco.py --device cpu --steps 4 --image-size 128 --crops 4 --targets 2 --input-size 64
"""

from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import time

import torch
import torchvision

from maco import IMAGENET_MEAN, IMAGENET_STD, MacoImage, Objective, default_spectrum, maco
from maco.model import fold_batchnorm
from maco.transforms import target_generators
from maco.transforms import add_uniform_noise, crop_and_resize, sample_crop_boxes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_throughput(
    model: torch.nn.Module, batch: int, input_size: int, device: torch.device, repeats: int
) -> float:
    """Images per second of forward + input gradient, frozen model, as MaCo runs it."""
    cuda = device.type == "cuda"
    model = model.eval().requires_grad_(False)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, input_size, input_size, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(x)
        (grad,) = torch.autograd.grad(out.float()[:, 0].sum(), x)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def largest_batch(
    model: torch.nn.Module, input_size: int, device: torch.device, limit: int = 16384
) -> tuple[int, float]:
    """Largest power-of-two batch whose forward + input gradient (bf16) fits on the GPU, and its peak GiB."""
    model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    best, peak = 0, 0.0
    batch = 32
    while batch <= limit:
        try:
            torch.cuda.reset_peak_memory_stats(device)
            x = torch.rand(batch, 3, input_size, input_size, device=device)
            x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            torch.autograd.grad(out.float()[:, 0].sum(), x)
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            x = out = None
            torch.cuda.empty_cache()
        best, peak = batch, torch.cuda.max_memory_allocated(device) / 2**30
        batch *= 2
    return best, peak


def compile_hook_free_children(model: torch.nn.Module, hooked: tuple[str, ...]) -> None:
    """Compile, in place, every top-level child before the first ``hooked`` one (hooks stay in eager code)."""
    for name, child in model.named_children():
        if name in hooked:
            break
        child.compile(dynamic=False)


def horama_style(
    model: torch.nn.Module,
    vector: torch.Tensor,
    *,
    steps: int,
    crops: int,
    image_size: int,
    input_size: int,
    device: torch.device,
) -> float:
    """Seconds for one visualization done as Horama does: fp32, model not frozen, one target."""
    model = model.train(False).requires_grad_(True)
    param = MacoImage(
        default_spectrum(image_size).to(device), 1, phase_init="reference", generators=target_generators([0], 0)
    )
    opt = torch.optim.NAdam(param.parameters(), lr=1.0)
    box_gen, noise_gen = target_generators([0], 1), target_generators([0], 2, device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    features = torch.nn.Sequential(*list(model.children())[:-1])
    _sync(device)
    start = time.perf_counter()
    alpha = torch.zeros(1, 3, image_size, image_size, device=device)
    for _ in range(steps):
        opt.zero_grad()
        canvas = param()
        canvas.retain_grad()
        boxes = sample_crop_boxes(crops, generator=box_gen[0])[None]
        x = add_uniform_noise(crop_and_resize(canvas, boxes, input_size), 0.1, noise_gen)
        acts = features((x - mean) / std).flatten(1)
        dot = acts @ vector
        cos = dot / (acts.norm(dim=1) * vector.norm() + 1e-8)
        (-(dot * cos.clamp_min(0.1) ** 2).mean()).backward()
        alpha += canvas.grad.abs()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time the folded model with torch.compile")
    parser.add_argument(
        "--horama-targets",
        type=int,
        default=1,
        help="Horama-style visualizations actually run; the time is scaled to --targets",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().to(device).eval()
    batch = args.targets * args.crops

    ref = reference_throughput(model, batch, args.input_size, device, args.repeats)
    probe = torch.rand(2, 3, args.input_size, args.input_size, device=device)
    folded = fold_batchnorm(model, (probe - probe.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
                            / probe.new_tensor(IMAGENET_STD).view(1, 3, 1, 1))
    ref_folded = reference_throughput(folded, batch, args.input_size, device, args.repeats)
    if device.type == "cuda":
        fits, fits_gib = largest_batch(copy.deepcopy(folded), args.input_size, device)
    if args.compile:
        compile_hook_free_children(folded, ("avgpool", "fc"))
        _sync(device)
        start = time.perf_counter()
        reference_throughput(folded, batch, args.input_size, device, 1)  # compiles forward and backward
        compile_seconds = time.perf_counter() - start
        ref_compiled = reference_throughput(folded, batch, args.input_size, device, args.repeats)
    vectors = torch.rand(args.targets, 2048, device=device)
    maco(
        Objective.direction(model, "avgpool", vectors),
        steps=2,
        image_size=args.image_size,
        crops=args.crops,
        input_size=args.input_size,
        seed=0,
        progress=False,
    )  # warm-up (cuDNN autotune, allocator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = maco(
        Objective.direction(model, "avgpool", vectors),
        steps=args.steps,
        image_size=args.image_size,
        crops=args.crops,
        input_size=args.input_size,
        seed=0,
        progress=False,
    )
    ours = result.images_per_second
    maco_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    horama_seconds = statistics.median(
        horama_style(
            model,
            vectors[i],
            steps=args.steps,
            crops=args.crops,
            image_size=args.image_size,
            input_size=args.input_size,
            device=device,
        )
        for i in range(args.horama_targets)
    )
    horama_total = horama_seconds * args.targets
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; date: {datetime.date.today()}; torch {torch.__version__}")
    print(
        f"settings: {args.targets} targets x {args.crops} crops, {args.steps} steps, {args.image_size} px canvas, "
        f"{args.input_size} px input (batch {batch})"
    )
    print("| measure | value | ratio |")
    print("|---|---|---|")
    print(f"| (1) model forward + input grad, frozen, bf16/channels_last on CUDA | {ref:,.0f} img/s | 1.00 |")
    print(f"| (1b) the same, BatchNorm folded (as MaCo runs it) | {ref_folded:,.0f} img/s | {ref_folded / ref:.2f} |")
    if args.compile:
        print(f"| (1c) folded + torch.compile up to avgpool (compile: {compile_seconds:.0f} s) | "
              f"{ref_compiled:,.0f} img/s | {ref_compiled / ref:.2f} |")
    print(f"| (2) MaCo, {args.targets} targets in one batch | {ours:,.0f} img/s | {ours / ref:.2f} of (1) |")
    print(f"| (3) {args.targets} concept visualizations, one call | {result.seconds:.1f} s | |")
    if device.type == "cuda":
        print(f"| largest power-of-two batch, forward + input grad, folded, bf16 | {fits} crops "
              f"({fits_gib:.1f} GiB peak; MaCo's peak: {maco_gib:.1f} GiB at batch {batch}) | |")
    print(
        f"| (4) Horama-style: one target per call, fp32, not frozen | {horama_total:.1f} s | "
        f"{horama_total / result.seconds:.1f}x slower than (3) |"
    )


if __name__ == "__main__":
    main()
