"""What every speed benchmark reports, so its numbers can be checked by a program as well as read.

A benchmark prints a Markdown table; with ``--out DIR`` it also writes ``DIR/<part>.md`` (the same text) and
``DIR/<part>.json``: the device (name, memory, compute capability on CUDA; the thread count on a CPU), the torch,
torchvision and CUDA versions, the date, the exact command, the settings and every figure of the table.
``benchmarks/gpu_suite.sh`` passes ``--out benchmarks/results/gpu`` on a GPU machine.
"""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision

from maco.device import synchronize

__all__ = ["device_name", "environment", "synchronize", "write_report"]

def device_name(device: torch.device) -> str:
    """The GPU's name, or "CPU (n threads)": thread counts change CPU figures as much as the chip does."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def environment(device: torch.device) -> dict[str, Any]:
    """Device, library versions, date and command of this run."""
    described: dict[str, Any] = {"name": device_name(device), "type": device.type}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        described.update(
            memory_gib=round(properties.total_memory / 2**30, 1),
            capability=f"{properties.major}.{properties.minor}",
            cudnn=torch.backends.cudnn.version(),
        )
    return {
        "device": described,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
    }


def write_report(
    part: str, table: str, *, device: torch.device, settings: dict[str, Any], figures: dict[str, Any], out: Path | None
) -> None:
    """Print ``table``; with ``out``, also write ``out/<part>.md`` and ``out/<part>.json`` (see the module doc)."""
    report = {"part": part, **environment(device), "settings": settings, "figures": figures}
    header = f"{report['device']['name']}; {report['date'][:10]}; torch {report['torch']}\n\n    {report['command']}\n"
    text = f"{header}\n{table.rstrip()}\n"
    print(text)
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{part}.md").write_text(text)
    (out / f"{part}.json").write_text(json.dumps(report, indent=1, sort_keys=True, allow_nan=False, default=str) + "\n")
