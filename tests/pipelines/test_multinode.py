"""Beyond one machine: the run's bookkeeping per class, and torchrun across two "nodes" on this host.

The two nodes are two ``torchrun --nnodes 2 --node-rank 0|1`` launchers on
127.0.0.1 (gloo, CPU), as a Slurm job would start one per node
(docs/multinode.md, docs/slurm_imagenet.sbatch). Only loopback addresses are used.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import pipelines.run.classes as run_module
from maco import RenderSettings
from pipelines.demo.run import DEMO_CONFIG
from pipelines.run.jobs import ClassJob
from pipelines.models import demo_model
from pipelines.run.record import ClassRecord
from pipelines.run.classes import run_classes

N_DEMO_CLASSES = 6
TINY_VIZ = RenderSettings(steps=2, image_size=64, crops=2, seed=0)
TINY = replace(DEMO_CONFIG, visualization=TINY_VIZ, inversion=TINY_VIZ, inversions=2, top_crops=4)


def _fake_jobs(root: Path, n: int) -> list[ClassJob]:
    jobs = []
    for index in range(n):
        folder = root / f"{index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "a.png").write_bytes(b"not decoded: run_class is faked")
        jobs.append(ClassJob(class_index=index, class_name=f"class {index}", folder=folder))
    return jobs


def _count_bookkeeping(tmp_path: Path, monkeypatch, n: int) -> dict[str, int]:
    """Run ``n`` classes twice (with a fake, instant class run); count record reads and run.json writes."""
    counts = {"loads": 0, "run_json": 0, "run_class": 0}

    def fake_run_class(job, split, config, run_dir, *, device, progress=True, rank=0):
        counts["run_class"] += 1
        stamps = run_module.class_stamps(job, split, config)
        record = ClassRecord(class_index=job.class_index, class_name=job.class_name, wnid=None, model_id="demo",
                             layer="layer4", n_images=1, n_crops=1, n_concepts=0, reconstruction_error=0.0,
                             timings={"all": 0.01}, stamp=stamps.record.to_dict())
        record.save(run_module.class_dir(run_dir, job.class_index) / "class.json")
        return record

    real_load, real_write = ClassRecord.load.__func__, run_module._write_run_json

    def counted_load(cls, path, **kwargs):
        counts["loads"] += 1
        return real_load(cls, path, **kwargs)

    def counted_write(*args, **kwargs):
        counts["run_json"] += 1
        return real_write(*args, **kwargs)

    jobs, out = _fake_jobs(tmp_path / f"images{n}", n), tmp_path / f"run{n}"
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "run_class", fake_run_class)
        patch.setattr(ClassRecord, "load", classmethod(counted_load))
        patch.setattr(run_module, "_write_run_json", counted_write)
        first = run_classes(jobs, demo_model(), TINY, out, progress=False, gallery=False)
        rerun = run_classes(jobs, demo_model(), TINY, out, progress=False, gallery=False)
    assert first.done == list(range(n))
    assert rerun.skipped == list(range(n)) and not rerun.done
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    return counts


def test_bookkeeping_is_constant_work_per_class(tmp_path, monkeypatch):
    small = _count_bookkeeping(tmp_path, monkeypatch, 4)
    large = _count_bookkeeping(tmp_path, monkeypatch, 12)
    # a new class: no read back of what run_class returned; a finished one: one read, for its check and its entry;
    # run.json: written when each of the two runs starts and ends, whatever the number of classes
    assert small == {"loads": 4, "run_json": 2 * 2, "run_class": 4}
    assert large == {"loads": 12, "run_json": 2 * 2, "run_class": 12}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_nodes(out: Path) -> list[str]:
    """Run the demo as two torchrun nodes of one process each on 127.0.0.1; the two launchers' outputs."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    launchers = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                   "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                   "-m", "pipelines.cli", "-q", "demo", "--out", str(out), "--steps", "2", "--image-size", "64",
                   "--crops", "2", "--images-per-class", "3", "--device", "cpu"]
        launchers.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          env=env))
    outputs = []
    try:
        for launcher in launchers:
            outputs.append(launcher.communicate(timeout=900)[0])
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
    for launcher, output in zip(launchers, outputs):
        assert launcher.returncode == 0, output[-4000:]
    return outputs


def _done_and_finished(outputs: list[str]) -> tuple[int, int]:
    """Classes run and classes found finished, summed over every rank's report line."""
    reports = [re.search(r"(\d+) classes done, (\d+) already finished, 0 failed", o) for o in outputs]
    assert all(reports), outputs
    return sum(int(r.group(1)) for r in reports), sum(int(r.group(2)) for r in reports)


def _galleries(outputs: list[str]) -> list[int]:
    """How many galleries each node built: its "gallery written to" log lines."""
    return [len(re.findall(r"^INFO pipelines\.site\.gallery: gallery written to ", o, re.M)) for o in outputs]


@pytest.mark.slow
def test_two_torchrun_nodes_share_the_classes_and_a_rerun_redoes_only_what_is_missing(tmp_path):
    out = tmp_path / "run"
    outputs = _two_nodes(out)
    records = {c: out / "classes" / f"{c:04d}" / "class.json" for c in range(N_DEMO_CLASSES)}
    ranks = [json.loads(path.read_text())["rank"] for path in records.values()]
    assert ranks == [0, 1] * (N_DEMO_CLASSES // 2)  # every class once, rank r takes every 2nd
    assert _done_and_finished(outputs) == (N_DEMO_CLASSES, 0)
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["status"] == "done"
    assert sorted(map(int, run["classes"])) == list(range(N_DEMO_CLASSES))
    assert _galleries(outputs) == [1, 0]  # built once, by rank 0 (node 0), at the end
    assert (out / "index.html").is_file()
    for c in range(N_DEMO_CLASSES):
        assert (out / "classes" / f"{c:04d}" / "index.html").is_file()

    # a node died before class 3 (node 1's) finished: rerunning the same command redoes that class alone
    records[3].unlink()
    before = {c: path.stat().st_mtime_ns for c, path in records.items() if c != 3}
    outputs = _two_nodes(out)
    assert _done_and_finished(outputs) == (1, N_DEMO_CLASSES - 1)
    assert {c: path.stat().st_mtime_ns for c, path in records.items() if c != 3} == before
    assert json.loads(records[3].read_text())["rank"] == 1
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert _galleries(outputs) == [1, 0]


REPO = Path(__file__).resolve().parents[2]
FAKE_SRUN = """#!/bin/bash
# srun as Slurm runs a step of one task per node: the command once per node (SLURM_NODEID=0..N-1), in parallel
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_JOB_NUM_NODES; node++)); do SLURM_NODEID=$node "$@" & pids+=($!); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""
FAKE_SCONTROL = "#!/bin/bash\nprintf '127.0.0.1\\n127.0.0.1\\n'\n"  # `scontrol show hostnames`: the job's 2 nodes


@pytest.mark.slow
def test_the_slurm_script_runs_one_torchrun_per_node(tmp_path):
    """docs/slurm_imagenet.sbatch under a stand-in srun (2 nodes on 127.0.0.1), with the demo as its command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if key not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}", SLURM_JOB_NUM_NODES="2",
               SLURM_JOB_NODELIST="node[1-2]", GPUS_PER_NODE="1", MASTER_PORT=str(_free_port()),
               OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    out = tmp_path / "run"
    command = ["bash", str(REPO / "docs" / "slurm_imagenet.sbatch"), "-q", "demo", "--out", str(out), "--steps", "2",
               "--image-size", "64", "--crops", "2", "--images-per-class", "3", "--device", "cpu"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    ranks = [json.loads((out / "classes" / f"{c:04d}" / "class.json").read_text())["rank"]
             for c in range(N_DEMO_CLASSES)]
    assert ranks == [0, 1] * (N_DEMO_CLASSES // 2)
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert _galleries([done.stdout + done.stderr]) == [1] and (out / "index.html").is_file()
