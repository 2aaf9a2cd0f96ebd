"""Fault injection for run tests: a real ``concept-lens run`` whose N-th rename is faulted, for many N.

Every file of a run is written to a temporary file and then renamed over its destination
(:mod:`pipelines.io`), so "the N-th rename" is the N-th moment a write completes. Run as

    python -m tests.pipelines.fault_runner IMAGES ROOT FAULT MOMENTS CLASSES

it runs the command line once without a fault into ``ROOT/reference/run``, counts its renames, then for each
chosen moment N runs it into ``ROOT/at_N/run`` with the N-th rename faulted and once more without (the resume),
and prints a JSON summary (exit code and output of every run). FAULT is ``kill`` (the process dies as with
SIGKILL, exit 137) or ``enospc`` (the rename raises "No space left on device"); MOMENTS is ``all`` or a number of
moments drawn with a fixed seed. Torch is imported once: each run is a forked child, a real process with its own
exit code and output, so the hundred runs of ``all`` take seconds each instead of an import each.

The command is ``concept-lens run --data-root IMAGES --classes CLASSES`` with the demo network behind it (in place
of the weights it would load) and a budget small enough for a class to take a fraction of a second.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from pipelines.run.lock import LOCK_FILE
from pipelines.run.stamp import STAMP_FILE

REPO = Path(__file__).resolve().parents[2]
# RunConfig fields the command line does not set: the smallest maps, crops and curves that still draw every part
SMALL = dict(top_crops=2, map_images=2, map_strip=2, deletion_seeds=1, fidelity_seeds=2, cluster_images=8)
BUDGET = ["--k", "2", "--steps", "1", "--image-size", "32", "--crops", "1", "--inversions", "1", "--workers", "0",
          "--device", "cpu"]
VOLATILE = {"seconds", "timings", "started", "peak_memory_mb", "digest"}  # a record's digest covers its timings


def without_volatile(value: Any) -> Any:
    """JSON data without what differs between two identical runs (timings, start times)."""
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def snapshot(root: Path) -> dict[str, object]:
    """Every file of a run: bytes, except timings in JSON and zip timestamps in .npz (compared by content).

    A cache's stamp lists the digest of each of its files: only their names are kept, the files being compared
    themselves (their digests change with their timings and zip timestamps).
    """
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != LOCK_FILE):
        name = str(path.relative_to(root))
        if path.name == STAMP_FILE:
            stamp = json.loads(path.read_text())
            stamp["files"] = sorted(stamp.get("files", {}))
            files[name] = stamp
        elif path.suffix == ".json":
            files[name] = without_volatile(json.loads(path.read_text()))
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                files[name] = {key: arrays[key].tobytes() for key in arrays.files}
        else:
            files[name] = path.read_bytes()
    return files


def fault_runs(images: Path, root: Path, fault: str, moments: str, classes: str) -> dict[str, Any]:
    """Run this module in a subprocess (see the module docstring) and return its summary."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.pipelines.fault_runner", str(images), str(root), fault,
                           moments, classes], capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _use_demo_network() -> None:
    """Put the demo network and the small budget behind the command line, in place of a downloaded model."""
    import pipelines.cli as cli
    from pipelines.run.config import RunConfig
    from pipelines.demo import DEMO_INPUT_SIZE
    from pipelines.run.jobs import class_folders
    from pipelines.models import demo_model

    cli._model_args = lambda args: None
    cli._categories = lambda args, model: class_folders(args.data_root)  # the demo folders name its classes
    cli._model = lambda model, **kwargs: demo_model()
    cli.RunConfig = functools.partial(RunConfig, image_size=DEMO_INPUT_SIZE, **SMALL)


def _child(argv: list[str], fault: str, at: int, log: Path, report: int) -> NoReturn:
    """In a forked child: run the command with the ``at``-th rename faulted (0: none); write the rename count."""
    from pipelines.cli import main

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    renames = 0
    real_replace = os.replace

    def faulty_replace(src: Any, dst: Any) -> None:
        nonlocal renames
        renames += 1
        if renames == at:
            if fault == "kill":
                os._exit(137)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    os.replace = faulty_replace
    os.fsync = lambda fd: None  # a fault here is a process's, not a power cut's: durability is not under test
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
        code = 1
    os.write(report, str(renames).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def _run(argv: list[str], fault: str, at: int, log: Path) -> dict[str, Any]:
    """One run in a forked child: its exit code, output and number of renames."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(argv, fault, at, log, write)
    os.close(write)
    with os.fdopen(read) as pipe:
        renames = pipe.read()
    _, status = os.waitpid(pid, 0)
    return {"code": os.waitstatus_to_exitcode(status), "output": log.read_text(errors="replace"),
            "renames": int(renames or 0)}


def main(images: str, root: str, fault: str, moments: str, classes: str) -> None:
    _use_demo_network()
    logs = Path(root) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def run(out: Path, at: int, name: str) -> dict[str, Any]:
        argv = ["-q", "run", "--data-root", images, "--classes", classes, "--out", str(out), *BUDGET]
        return _run(argv, fault, at, logs / f"{name}.log")

    reference = run(Path(root) / "reference" / "run", 0, "reference")
    total = reference["renames"]
    every = np.arange(1, total + 1)
    chosen = every if moments == "all" else np.random.default_rng(0).choice(every, int(moments), replace=False)
    results = []
    for at in sorted(int(n) for n in chosen):
        out = Path(root) / f"at_{at}" / "run"  # the gallery's title is the folder's name: "run" in all of them
        results.append({"at": at, "faulted": run(out, at, f"at_{at}"), "resumed": run(out, 0, f"at_{at}_resumed")})
    print(json.dumps({"renames": total, "reference": reference, "moments": results}))


if __name__ == "__main__":
    main(*sys.argv[1:])
