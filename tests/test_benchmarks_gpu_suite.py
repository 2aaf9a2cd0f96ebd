"""benchmarks/gpu_suite.sh works before a GPU is at hand: a dry run on the CPU writes every part's JSON and table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
GPU_RESULTS = ROOT / "benchmarks" / "results" / "gpu"
REPORT_KEYS = {"part", "device", "torch", "torchvision", "cuda", "date", "command", "settings", "figures"}
FIGURES = {
    "tests": {"exit_status", "passed", "failed", "skipped", "error", "tests"},
    "maco": {
        "batch", "eager_img_s", "folded_img_s", "maco_img_s", "maco_step_img_s", "maco_vs_folded",
        "maco_step_vs_folded", "maco_seconds", "compiled_img_s", "compile_seconds", "largest_batch", "maco_peak_mib",
        "horama_seconds", "horama_seconds_per_target", "horama_targets_timed", "horama_extrapolated", "rounds",
    },
    "nmf": {"rows"},
    "features": {"plain_crops_s", "extract_features_crops_s", "ratio"},
    "class": {"seconds", "peak_memory_mb", "class_seconds", "projected_hours_1_device", "projected_hours_8_devices"},
}


def suite(*args: str, out: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    environment.pop("OUT", None)
    if out is not None:
        environment["OUT"] = str(out)
    return subprocess.run(["bash", str(SUITE), *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=600)


def gpu_results() -> list[str]:
    return sorted(p.name for p in GPU_RESULTS.iterdir())


@pytest.mark.slow
def test_a_dry_run_writes_every_parts_json_and_table(tmp_path):
    before = gpu_results()
    done = suite("--dry-run", "all", out=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{part}.{ext}" for part in FIGURES
                                                                 for ext in ("json", "md"))
    for part, figures in FIGURES.items():
        report = json.loads((tmp_path / f"{part}.json").read_text())
        assert REPORT_KEYS <= set(report) and report["part"] == part
        assert report["device"]["type"] == "cpu" and report["date"].startswith("20")
        assert report["command"].startswith("python benchmarks/") and f"--out {tmp_path}" in report["command"]
        assert figures <= set(report["figures"]), figures - set(report["figures"])
        assert (tmp_path / f"{part}.md").read_text().count("|---") >= 1
    maco = json.loads((tmp_path / "maco.json").read_text())["figures"]
    assert maco["horama_targets_timed"] == 2 and maco["horama_extrapolated"] is False  # every target timed
    assert 0 < maco["maco_step_vs_folded"] and 0 < maco["maco_vs_folded"]
    nmf = json.loads((tmp_path / "nmf.json").read_text())["figures"]["rows"]
    assert {row["matrix"] for row in nmf} == {"planted", "demo"}  # real crop features beside the planted matrix
    assert {row["solver"] for row in nmf} == {"sklearn cd", "hals"}
    assert gpu_results() == before  # the repository's GPU results folder is left alone


def test_a_dry_run_refuses_the_gpu_results_folder():
    done = suite("--dry-run", "nmf", out=GPU_RESULTS)
    assert done.returncode == 2 and "give OUT a folder outside benchmarks/results/gpu" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: a real run would start")
def test_without_a_gpu_a_real_run_stops_before_writing(tmp_path):
    done = suite("maco", out=tmp_path)
    assert done.returncode == 2 and "no CUDA device here" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_bench_class_stops_without_photos(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/bench_class.py", "--device", "cpu", "--images", "2",
                           "--photos", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0 and "no *.JPEG photos in" in done.stderr and "--model demo" in done.stderr
