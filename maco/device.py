"""The few calls that only mean something on CUDA, behind one seam.

Everything else in a run is device-agnostic code that the CPU tests execute,
bf16 autocast and channels_last included (``RenderSettings(amp=True,
channels_last=True)`` requests them on any device). What is left here cannot
run on a CPU at all: waiting for queued kernels, the allocator's peak-memory
counters, and random generators that live on the GPU. Each function is a
no-op, or the CPU equivalent, on other devices, so callers (the render loop,
the class pipeline's timings, the benchmarks) carry no ``if cuda`` branches of
their own; the CUDA branches are tested with the CUDA functions stubbed out,
and for real on a GPU.
"""

from __future__ import annotations

import torch

__all__ = ["generator", "on_cuda_by_default", "peak_memory_mb", "reset_peak_memory", "synchronize"]


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def on_cuda_by_default(choice: bool | None, device: torch.device | str) -> bool:
    """Resolve a speed option whose ``None`` means "on CUDA only" (``amp``, ``channels_last``).

    bf16 autocast and channels_last pay on a GPU and mostly cost on a CPU, so they default to CUDA; an explicit
    ``True`` or ``False`` wins on every device, which is how the CPU tests run the GPU path.
    """
    return _is_cuda(device) if choice is None else choice


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device``: before reading a clock, CUDA kernels may still be running."""
    if _is_cuda(device):
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device | str) -> float | None:
    """Peak memory allocated by tensors on ``device`` since the last :func:`reset_peak_memory`, in MiB.

    ``None`` where the device keeps no such counter (the CPU): a missing figure, rather than a zero that would
    read as a measurement.
    """
    if not _is_cuda(device):
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new peak-memory window on ``device`` (no-op where :func:`peak_memory_mb` is ``None``)."""
    if _is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)


def generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` that draws on ``device``.

    Random tensors drawn on the GPU need a GPU generator, and its stream differs from the CPU's for the same
    seed: a CUDA run is reproducible on CUDA, not equal to a CPU run.
    """
    return torch.Generator(device=device).manual_seed(seed)
