"""Run the class pipeline over many classes, on one process or many (torchrun).

``run.json`` at the root of a run records the config, library versions,
device, seed, world size, timings and the status of every class. A rerun
skips the classes whose ``class.json`` says ``done`` and finishes the others.
Under ``torchrun`` each rank takes every ``WORLD_SIZE``-th class (so each
class runs exactly once, across nodes too); rank 0 writes ``run.json`` and
builds the gallery once all ranks are done.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .class_run import class_dir, is_done, run_class
from .config import RunConfig
from .gallery import build_gallery
from .io import load_json, save
from .jobs import ClassJob
from .models import ModelBundle

__all__ = ["RunSummary", "distributed_context", "run_classes"]

_logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: per-class status and where the gallery is."""

    run_dir: Path
    done: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    gallery: Path | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class _Dist:
    rank: int
    world_size: int
    local_rank: int
    initialised_here: bool


def distributed_context() -> _Dist:
    """Read torchrun's environment and initialise a process group if there are several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        here = True
    return _Dist(rank, world, local, here)


def _versions() -> dict[str, str]:
    names = ("concept-lens", "torch", "torchvision", "numpy", "scikit-learn", "pillow")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return {**found, "python": platform.python_version()}


def _resolve_device(device: str | None, local_rank: int) -> torch.device:
    if device is None:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--device {device}` was requested but CUDA is not available here; use --device cpu.")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    return resolved


def _write_run_json(
    run_dir: Path,
    jobs: Sequence[ClassJob],
    bundle: ModelBundle,
    config: RunConfig,
    device: torch.device,
    world: int,
    status: str,
    started: str,
    seconds: float,
    failed: dict[int, str],
) -> None:
    classes = {}
    for job in jobs:
        record: dict[str, Any] = {"class_name": job.class_name, "folder": str(job.folder)}
        path = class_dir(run_dir, job.class_index) / "class.json"
        if is_done(run_dir, job.class_index):
            data = load_json(path)
            record.update(status="done", timings=data.get("timings", {}), skipped=data.get("skipped", []))
        else:
            record.update(status="failed" if job.class_index in failed else "pending")
            if job.class_index in failed:
                record["error"] = failed[job.class_index]
        classes[str(job.class_index)] = record
    save(
        {
            "status": status,
            "started": started,
            "seconds": round(seconds, 2),
            "config": config.to_dict(),
            "model_id": bundle.model_id,
            "device": str(device),
            "world_size": world,
            "versions": _versions(),
            "classes": classes,
        },
        run_dir / "run.json",
    )


def run_classes(
    jobs: Sequence[ClassJob],
    bundle: ModelBundle,
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    device: str | None = None,
    progress: bool = True,
    gallery: bool = True,
) -> RunSummary:
    """Run every class of ``jobs`` (this rank's share under torchrun) and build the gallery.

    A class that fails is recorded in ``run.json`` with its error and the run
    goes on; rerunning finishes it.
    """
    run_dir = Path(run_dir)
    ctx = distributed_context()
    torch_device = _resolve_device(device, ctx.local_rank)
    bundle.to(torch_device)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    summary = RunSummary(run_dir=run_dir)
    if ctx.rank == 0:
        _write_run_json(run_dir, jobs, bundle, config, torch_device, ctx.world_size, "running", started, 0.0, {})
    mine = list(jobs)[ctx.rank :: ctx.world_size]
    for job in tqdm(mine, desc=f"classes (rank {ctx.rank})" if ctx.world_size > 1 else "classes", disable=not progress):
        if is_done(run_dir, job.class_index):
            summary.skipped.append(job.class_index)
            continue
        try:
            run_class(job, bundle, config, run_dir, device=torch_device, progress=progress, rank=ctx.rank)
            summary.done.append(job.class_index)
        except (ValueError, OSError, RuntimeError, FloatingPointError) as err:
            _logger.error("class %d (%s) failed: %s", job.class_index, job.class_name, err)
            _logger.debug("%s", traceback.format_exc())
            summary.failed[job.class_index] = f"{type(err).__name__}: {err}"
    failed_lists: list[dict[int, str]] = [summary.failed]
    if ctx.world_size > 1:
        failed_lists = [{} for _ in range(ctx.world_size)]
        dist.all_gather_object(failed_lists, summary.failed)
        dist.barrier()
    summary.seconds = time.perf_counter() - start
    if ctx.rank == 0:
        failed = {k: v for part in failed_lists for k, v in part.items()}
        status = "done" if not failed else "incomplete"
        _write_run_json(
            run_dir, jobs, bundle, config, torch_device, ctx.world_size, status, started, summary.seconds, failed
        )
        if gallery:
            summary.gallery = build_gallery(run_dir)
    if ctx.initialised_here:
        dist.barrier()
        dist.destroy_process_group()
    return summary
