"""Run the class pipeline over many classes, on one process or many (torchrun).

``run.json`` at the root of a run records the config, library versions,
device, seed, world size, timings and the status of every class (with the
reason of each failure). A rerun skips the classes that are finished, intact
and stamped with the same settings, weights and images, and (re)does the
others (:mod:`pipelines.run.stamp`). One run at a time per folder
(:mod:`pipelines.run.lock`).
Under ``torchrun`` each rank takes every ``WORLD_SIZE``-th class (so each
class runs exactly once, across nodes too); rank 0 writes ``run.json`` and
builds the gallery once all ranks are done.

Bookkeeping costs O(1) per class, so 1000 classes cost no more per class than
ten: a rank keeps one small entry per class in memory (from the record that
``run_class`` returns, or the one read back for a finished class), and
``run.json`` is written when the run starts and when it ends (or is
interrupted), never once per class. While a run is going, its progress is the
``class.json`` files with ``"status": "done"`` (see docs/multinode.md).
"""

from __future__ import annotations

import datetime
import logging
import os
import time
import traceback
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from concepts import ModelSplit, library_versions

from .cache import class_stamps, finished_record
from .explain import class_dir, run_class
from .config import RunConfig
from ..site.gallery import build_gallery
from ..io import OutputNotWritableError, drop_killed_writes, full_disk_error, save
from .jobs import ClassJob
from .lock import RunLockedError, run_lock
from ..concept_layer import feature_transform
from .record import ClassRecord
from .stamp import weights_digest

__all__ = ["RunSummary", "distributed_context", "resolve_device", "run_classes", "run_folder_lock"]

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


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """The device a rank runs on; a clear error for a device that is not here."""
    if device is None:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"`--device {device}` is not a device name; use cpu, cuda or cuda:N.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--device {device}` was requested but CUDA is not available here; use --device cpu.")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    if resolved.type == "cuda" and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"`--device {device}`: this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0-cuda:{torch.cuda.device_count() - 1})."
        )
    return resolved


def _class_entry(job: ClassJob, status: str, **extra: Any) -> dict[str, Any]:
    return {"class_name": job.class_name, "folder": str(job.folder), "status": status, **extra}


def _finished_entry(job: ClassJob, record: ClassRecord, stamp_key: str) -> dict[str, Any]:
    """The run.json entry of a finished class, from its record (as run_class returned it, or as read back)."""
    skipped = [{"path": s.path, "reason": s.reason} for s in record.skipped]
    return _class_entry(job, "done", stamp=stamp_key, timings=record.timings, skipped=skipped)


def _write_run_json(
    run_dir: Path,
    split: ModelSplit,
    config: RunConfig,
    device: torch.device,
    world: int,
    status: str,
    started: str,
    seconds: float,
    classes: dict[int, dict[str, Any]],
) -> None:
    save(
        {
            "status": status,
            "started": started,
            "seconds": round(seconds, 2),
            "config": config.to_dict(),
            "model_id": split.model_id,
            "layer": split.layer,
            "feature_transform": feature_transform(split),
            "weights_digest": weights_digest(split),
            "device": str(device),
            "world_size": world,
            "versions": library_versions(),
            "classes": {str(index): entry for index, entry in sorted(classes.items())},
        },
        run_dir / "run.json",
    )


@contextmanager
def run_folder_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Lock ``run_dir`` for this job: rank 0 takes it; every rank fails at once if it cannot."""
    ctx = distributed_context()
    if ctx.world_size == 1:
        with run_lock(run_dir):
            yield
        return
    with ExitStack() as stack:
        error = None
        if ctx.rank == 0:
            try:
                stack.enter_context(run_lock(run_dir))
            except RunLockedError as err:
                error = str(err)
        answers: list[str | None] = [None] * ctx.world_size
        dist.all_gather_object(answers, error)
        if answers[0] is not None:
            raise RunLockedError(answers[0])
        yield


def run_classes(
    jobs: Sequence[ClassJob],
    split: ModelSplit,
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    device: str | None = None,
    progress: bool = True,
    gallery: bool = True,
) -> RunSummary:
    """Run every class of ``jobs`` (this rank's share under torchrun) and build the gallery.

    A class is skipped when its record is finished, intact and stamped with
    the same settings, model weights and images; otherwise its stale stages
    are redone (the log says why). A class that fails is recorded in
    ``run.json`` with its error and the run goes on; rerunning finishes it.
    ``run.json`` always ends with a final status: ``done``, ``incomplete``
    (some classes failed) or ``interrupted``. The run folder is locked for
    the whole run (see :mod:`pipelines.run.lock`).
    """
    run_dir = Path(run_dir)
    ctx = distributed_context()
    torch_device = resolve_device(device, ctx.local_rank)
    config = config.resolved(split)  # before any file is written: `nmf` on signed features is refused here
    with run_folder_lock(run_dir):
        return _run_locked(jobs, split, config, run_dir, ctx, torch_device, progress, gallery)


def _run_locked(
    jobs: Sequence[ClassJob],
    split: ModelSplit,
    config: RunConfig,
    run_dir: Path,
    ctx: _Dist,
    torch_device: torch.device,
    progress: bool,
    gallery: bool,
) -> RunSummary:
    weights_digest(split)  # computed once, on the CPU copy, before the model moves
    split.to(torch_device)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    summary = RunSummary(run_dir=run_dir)
    entries = {job.class_index: _class_entry(job, "pending") for job in jobs}

    def write(status: str, classes: dict[int, dict[str, Any]]) -> None:
        summary.seconds = time.perf_counter() - start
        seconds = summary.seconds
        _write_run_json(run_dir, split, config, torch_device, ctx.world_size, status, started, seconds, classes)

    if ctx.rank == 0:
        drop_killed_writes(run_dir / "run.json")
        write("running", entries)
    mine = list(jobs)[ctx.rank :: ctx.world_size]
    status = "interrupted"
    try:
        for job in tqdm(
            mine, desc=f"classes (rank {ctx.rank})" if ctx.world_size > 1 else "classes", disable=not progress
        ):
            entries[job.class_index] = _run_one(job, split, config, run_dir, torch_device, progress, ctx, summary)
        status = "done"
    finally:
        if status == "interrupted" and ctx.rank == 0:
            write("interrupted", entries)
    mine_entries = {job.class_index: entries[job.class_index] for job in mine}
    gathered: list[dict[int, dict[str, Any]]] = [mine_entries]
    if ctx.world_size > 1:
        gathered = [{} for _ in range(ctx.world_size)]
        dist.all_gather_object(gathered, mine_entries)
        dist.barrier()
    if ctx.rank == 0:
        for part in gathered:
            entries.update(part)
        failed = {i: e.get("error", "") for i, e in entries.items() if e["status"] != "done"}
        write("done" if not failed else "incomplete", entries)
        finished = [i for i, e in entries.items() if e["status"] == "done"]
        if gallery and finished:
            summary.gallery = build_gallery(run_dir)
        elif gallery:
            _logger.error("no class finished, so no gallery was built; see %s", run_dir / "run.json")
    if ctx.initialised_here:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _run_one(
    job: ClassJob,
    split: ModelSplit,
    config: RunConfig,
    run_dir: Path,
    device: torch.device,
    progress: bool,
    ctx: _Dist,
    summary: RunSummary,
) -> dict[str, Any]:
    """Run (or skip, when finished) one class; its run.json entry. Only a full disk stops the run."""
    try:
        stamps = class_stamps(job, split, config)
        record, reason = finished_record(class_dir(run_dir, job.class_index), stamps.record)
        if record is not None:
            summary.skipped.append(job.class_index)
            return _finished_entry(job, record, stamps.record.key)
        if reason != "it has not finished":
            _logger.warning("redoing class %d (%s): %s", job.class_index, job.class_name, reason)
        record = run_class(job, split, config, run_dir, device=device, progress=progress, rank=ctx.rank)
        summary.done.append(job.class_index)
        return _finished_entry(job, record, stamps.record.key)
    except Exception as err:  # noqa: BLE001 - one class's failure, whatever it is, must not stop the others
        _logger.error("class %d (%s) failed: %s", job.class_index, job.class_name, err)
        _logger.debug("%s", traceback.format_exc())
        summary.failed[job.class_index] = f"{type(err).__name__}: {err}"
        if isinstance(err, OutputNotWritableError):
            raise
        full = full_disk_error(err)
        if full is not None:
            raise full from err
        return _class_entry(job, "failed", error=summary.failed[job.class_index])
