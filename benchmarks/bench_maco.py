"""MaCo speed, like for like: against the forward + input gradient of the model it really runs (BatchNorm folded).

One run on one device (ResNet50; random weights are fine for timing). Every measurement gets its own fresh copy
of the model, so what one measurement does to its model (channels_last, folding, compiling, weight gradients)
cannot leak into the next.

1. Reference: forward + input gradient of the frozen model at MaCo's batch (``targets * crops`` crops at
   ``input_size``), in MaCo's precision and memory format (bf16 autocast and channels_last on CUDA):
   (1a) the model as given (eager); (1b) BatchNorm folded, which is what MaCo runs: **(2) / (1b) is MaCo's own
   overhead**; (1c) with ``--compile``, folded + ``torch.compile`` of every child up to ``avgpool`` (compile
   time apart).
2. MaCo (``maco.maco``, all targets in one batch): crops per second of the whole call (folding, set-up and the
   final copies included).
3. Seconds for ``targets`` concept (direction) visualizations in that one call.
4. The same work done as Horama does it: one target per call, fp32, the model not frozen (weight gradients
   computed), contiguous memory. Every target is timed; with ``--horama-targets N`` below ``targets`` the total
   is extrapolated from N targets, and the table says so.

(1a), (1b) and (2) alternate for ``--rounds`` rounds and their medians are reported: a busy shared machine slows
them alike. Usage::

    python benchmarks/bench_maco.py --device cuda --compile --out benchmarks/results/gpu     # paper settings
    python benchmarks/bench_maco.py --device cpu --steps 8 --image-size 256 --crops 4 --targets 4 --input-size 128
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time
from pathlib import Path

import torch
import torchvision
from _report import synchronize, write_report

from maco import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropsAndNoise,
    MacoImage,
    Objective,
    RenderSettings,
    default_spectrum,
    maco,
    render,
)
from maco.device import on_cuda_by_default, peak_memory_mb, reset_peak_memory
from maco.model import fold_batchnorm
from maco.transforms import add_uniform_noise, crop_and_resize, sample_crop_boxes, target_generators


def forward_input_grad(
    model: torch.nn.Module,
    batch: int,
    input_size: int,
    device: torch.device,
    *,
    amp: bool,
    channels_last: bool,
    repeats: int,
) -> float:
    """Images per second of forward + input gradient of ``model`` (frozen, changed in place: pass a copy)."""
    model = model.eval().requires_grad_(False)
    x = torch.rand(batch, 3, input_size, input_size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    times = []
    for i in range(repeats + 2):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        torch.autograd.grad(out.float()[:, 0].sum(), x)
        synchronize(device)
        if i >= 2:  # two warm-ups: allocator, cuDNN autotuning
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def largest_batch(
    model: torch.nn.Module, input_size: int, device: torch.device, limit: int = 16384
) -> tuple[int, float]:
    """Largest power-of-two batch whose forward + input gradient (bf16, channels_last) fits on the GPU; its peak GiB."""
    model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    best, peak = 0, 0.0
    batch = 32
    while batch <= limit:
        x = out = None
        try:
            reset_peak_memory(device)
            x = torch.rand(batch, 3, input_size, input_size, device=device)
            x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            torch.autograd.grad(out.float()[:, 0].sum(), x)
            synchronize(device)
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            x = out = None
            torch.cuda.empty_cache()
        best, peak = batch, peak_memory_mb(device) / 2**10
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
    synchronize(device)
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
    synchronize(device)
    return time.perf_counter() - start


class StepClock:
    """The default transforms, marking when each step starts: MaCo's steady step time, without touching its loop.

    On CUDA the marks are events recorded in the stream, so the loop is not made to wait for the GPU.
    """

    def __init__(self, transforms: CropsAndNoise, device: torch.device) -> None:
        self.transforms, self.device, self.marks = transforms, device, []

    def __call__(self, canvas: torch.Tensor, step: int) -> torch.Tensor:
        if self.device.type == "cuda":
            self.marks.append(torch.cuda.Event(enable_timing=True))
            self.marks[-1].record()
        else:
            self.marks.append(time.perf_counter())
        return self.transforms(canvas, step)

    def step_seconds(self) -> list[float]:
        """Seconds from each step's start to the next one's (one whole step each)."""
        synchronize(self.device)
        if self.device.type == "cuda":
            return [a.elapsed_time(b) / 1000 for a, b in itertools.pairwise(self.marks)]
        return [b - a for a, b in itertools.pairwise(self.marks)]


def run_maco(model: torch.nn.Module, vectors: torch.Tensor, args: argparse.Namespace) -> dict[str, float | None]:
    """One ``maco`` call on ``model`` (a fresh copy): whole-call and steady-step throughput, peak memory."""
    device = vectors.device
    settings = RenderSettings(steps=args.steps, image_size=args.image_size, crops=args.crops, seed=0)
    seeds = list(range(len(vectors)))
    clock = StepClock(CropsAndNoise(settings, seeds, args.input_size, device), device)
    reset_peak_memory(device)
    result = render(
        Objective.direction(model, "avgpool", vectors),
        settings,
        transforms=clock,
        input_size=args.input_size,
        progress=False,
    )
    batch = len(vectors) * args.crops
    step = statistics.median(clock.step_seconds()) if args.steps > 1 else result.seconds
    return dict(
        maco_img_s=result.images_per_second,
        maco_seconds=result.seconds,
        maco_step_img_s=batch / step,
        maco_peak_mib=peak_memory_mb(device),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10, help="timed forward + input-gradient passes per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of (1a), (1b) and (2); medians reported")
    parser.add_argument("--compile", action="store_true", help="also time the folded model with torch.compile")
    parser.add_argument(
        "--horama-targets",
        type=int,
        default=None,
        help="Horama-style visualizations actually run (default: all --targets; fewer: extrapolated)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write maco.md and maco.json into this folder")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    horama_targets = args.targets if args.horama_targets is None else min(args.horama_targets, args.targets)
    torch.manual_seed(0)
    base = torchvision.models.resnet50().to(device).eval()
    batch = args.targets * args.crops
    speed = dict(amp=on_cuda_by_default(None, device), channels_last=on_cuda_by_default(None, device))
    probe = torch.rand(2, 3, args.input_size, args.input_size, device=device)
    probe = (probe - probe.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / probe.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    vectors = torch.rand(args.targets, 2048, device=device)

    def reference(model: torch.nn.Module, repeats: int = args.repeats) -> float:
        return forward_input_grad(model, batch, args.input_size, device, repeats=repeats, **speed)

    maco(
        Objective.direction(copy.deepcopy(base), "avgpool", vectors),
        steps=2,
        image_size=args.image_size,
        crops=args.crops,
        input_size=args.input_size,
        seed=0,
        progress=False,
    )  # warm-up: allocator, kernels
    rounds = []
    for _ in range(args.rounds):
        eager = reference(copy.deepcopy(base))
        folded = reference(fold_batchnorm(copy.deepcopy(base), probe))
        ours = run_maco(copy.deepcopy(base), vectors, args)
        rounds.append(
            dict(
                eager_img_s=eager,
                folded_img_s=folded,
                **ours,
                maco_vs_folded=ours["maco_img_s"] / folded,
                maco_step_vs_folded=ours["maco_step_img_s"] / folded,
            )
        )
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0] if key != "maco_peak_mib"}
    compiled = compile_seconds = None
    if args.compile:
        model = fold_batchnorm(copy.deepcopy(base), probe)
        compile_hook_free_children(model, ("avgpool", "fc"))
        start = time.perf_counter()
        reference(model, repeats=1)  # compiles forward and backward
        compile_seconds = time.perf_counter() - start
        compiled = reference(model)
    fits = fits_gib = None
    if device.type == "cuda":
        fits, fits_gib = largest_batch(fold_batchnorm(copy.deepcopy(base), probe), args.input_size, device)
    horama_model = copy.deepcopy(base)
    horama = [
        horama_style(
            horama_model,
            vectors[i],
            steps=args.steps,
            crops=args.crops,
            image_size=args.image_size,
            input_size=args.input_size,
            device=device,
        )
        for i in range(horama_targets)
    ]
    horama_total = sum(horama) * args.targets / horama_targets
    extrapolated = horama_targets < args.targets
    peak = rounds[-1]["maco_peak_mib"]

    m = median
    rows = [
        f"| (1a) forward + input grad, frozen, eager | {m['eager_img_s']:,.1f} img/s | "
        f"{m['eager_img_s'] / m['folded_img_s']:.2f} of (1b) |",
        f"| (1b) the same, BatchNorm folded (what MaCo runs) | {m['folded_img_s']:,.1f} img/s | 1.00 |",
    ]
    if compiled is not None:
        rows.append(
            f"| (1c) folded + torch.compile up to avgpool (compile: {compile_seconds:.0f} s) | "
            f"{compiled:,.1f} img/s | {compiled / m['folded_img_s']:.2f} of (1b) |"
        )
    rows += [
        f"| **(2) MaCo, {args.targets} targets in one batch: a step (median)** | **{m['maco_step_img_s']:,.1f} "
        f"img/s** | **{m['maco_step_vs_folded']:.2f} of (1b)** |",
        f"| (2b) MaCo, the whole call (set-up, folding, first step, final copies included) | "
        f"{m['maco_img_s']:,.1f} img/s | {m['maco_vs_folded']:.2f} of (1b) |",
        f"| (3) {args.targets} concept visualizations, one call | {m['maco_seconds']:.1f} s | |",
    ]
    if fits is not None:
        rows.append(
            f"| largest power-of-two batch, forward + input grad, folded, bf16 | {fits} crops "
            f"({fits_gib:.1f} GiB peak; MaCo's peak: {peak / 2**10:.1f} GiB at batch {batch}) | |"
        )
    timed = f"extrapolated from {horama_targets} of {args.targets} targets" if extrapolated else "all targets timed"
    rows.append(
        f"| (4) Horama-style: one target per call, fp32, not frozen ({timed}) | {horama_total:.1f} s | "
        f"{horama_total / m['maco_seconds']:.1f}x the time of (3) |"
    )
    precision = "bf16 autocast, channels_last" if speed["amp"] else "float32, contiguous"
    table = "\n".join(
        [
            f"{args.targets} targets x {args.crops} crops (batch {batch}) at {args.input_size} px from a "
            f"{args.image_size} px canvas, {args.steps} steps; reference and MaCo in {precision}; medians of "
            f"{args.rounds} alternating rounds (a ratio is the median of each round's own ratio)",
            "",
            "| measure | value | ratio |",
            "|---|---|---|",
            *rows,
        ]
    )
    figures = dict(
        batch=batch,
        **median,
        compiled_img_s=compiled,
        compile_seconds=compile_seconds,
        largest_batch=fits,
        largest_batch_peak_gib=fits_gib,
        maco_peak_mib=peak,
        horama_seconds=horama_total,
        horama_seconds_per_target=horama,
        horama_targets_timed=horama_targets,
        horama_extrapolated=extrapolated,
        horama_vs_maco=horama_total / m["maco_seconds"],
        rounds=rounds,
        **{f"reference_{k}": v for k, v in speed.items()},
    )
    write_report("maco", table, device=device, settings=vars(args), figures=figures, out=args.out)


if __name__ == "__main__":
    main()
