"""One writer per run folder, and a run killed at any moment resumes to the same bytes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.demo_run import demo_jobs
from pipelines.lock import LOCK_FILE, RunLockedError, lock_holder, run_lock

HOLD_LOCK = "import sys, time\nfrom pipelines.lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
            "    print('locked', flush=True)\n    time.sleep(120)\n"


def hold_lock(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_fails_at_once_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, caplog):
    holder = hold_lock(tmp_path)
    try:
        assert lock_holder(tmp_path)["pid"] == holder.pid
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid} on "):
            with run_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        with run_lock(tmp_path):  # re-entrant within one process
            pass
    assert "no longer running" in caplog.text
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly: nobody to take over from


def test_the_cli_refuses_a_locked_folder_before_loading_weights(tmp_path, capsys, monkeypatch):
    import pipelines.cli as cli

    monkeypatch.setattr(cli, "_model", lambda weights: pytest.fail("weights were loaded"))
    images = demo_jobs(tmp_path / "images", n_per_class=1)[0].folder
    holder = hold_lock(tmp_path / "out")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["run", "--images", str(images), "--class-index", "1", "--out", str(tmp_path / "out"),
                  "--weights", "IMAGENET1K_V2"])
        assert exit_info.value.code == 2
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


DEMO = ["-q", "demo", "--steps", "2", "--image-size", "64", "--crops", "2", "--images-per-class", "3",
        "--device", "cpu"]


@pytest.mark.slow
def test_two_demo_processes_on_one_folder(tmp_path):
    """While one real run works in a folder, a second one on it stops at once, naming the first."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    long_run = [*DEMO, "--steps", "500"]  # long enough to still hold the folder when the second one starts
    first = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *long_run, "--out", str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (lock_holder(out) or {}).get("pid"):
            assert first.poll() is None, first.communicate()
        second = subprocess.run([sys.executable, "-m", "pipelines.cli", *DEMO, "--out", str(out)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second one started: make it longer"
        assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


# ---------------------------------------------------------------------------------------------------------------
# Fault injection: the process dies (os._exit, like SIGKILL) just before its N-th rename, i.e. with a written
# temp file that never became the output. The resumed run must end with the same files as an uninterrupted run.

KILLABLE_RUN = textwrap.dedent(
    """
    import os, sys
    from dataclasses import replace
    out, kill_at, images = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    renames = [0]
    real_replace = os.replace

    def replace_or_die(src, dst):
        renames[0] += 1
        if renames[0] == kill_at:
            os._exit(137)
        return real_replace(src, dst)

    os.replace = replace_or_die
    from maco import RenderSettings
    from pipelines.demo_run import DEMO_CONFIG, demo_jobs
    from pipelines.models import demo_model
    from pipelines.run import run_classes
    viz = RenderSettings(steps=3, image_size=64, crops=2, seed=0)
    config = replace(DEMO_CONFIG, visualization=viz, inversion=viz, inversions=2, top_crops=3)
    jobs = demo_jobs(images, n_per_class=4)[:2]
    run_classes(jobs, demo_model(), config, out, progress=False)
    print(renames[0])
    """
)
VOLATILE = {"seconds", "timings", "started", "peak_memory_mb"}


def killable_run(out: Path, kill_at: int, images: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", KILLABLE_RUN, str(out), str(kill_at), str(images)],
                          capture_output=True, text=True, timeout=300, env=env)


def without_volatile(value):
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def snapshot(root: Path) -> dict[str, object]:
    """Every file of a run: bytes, except timings in JSON and zip timestamps in .npz (compared by content)."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != LOCK_FILE):
        name = str(path.relative_to(root))
        if path.suffix == ".json":
            files[name] = without_volatile(json.loads(path.read_text()))
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                files[name] = {key: arrays[key].tobytes() for key in arrays.files}
        else:
            files[name] = path.read_bytes()
    return files


@pytest.mark.slow
def test_a_run_killed_at_seeded_moments_resumes_to_identical_outputs(tmp_path):
    images = tmp_path / "images"
    demo_jobs(images, n_per_class=4)
    done = killable_run(tmp_path / "reference" / "run", 0, images)  # the gallery's title is the folder's name
    assert done.returncode == 0, done.stderr
    renames = int(done.stdout.split()[-1])
    reference = snapshot(tmp_path / "reference" / "run")
    assert any(name.endswith("_mosaic.webp") for name in reference) and "index.html" in reference
    moments = sorted(np.random.default_rng(0).choice(np.arange(1, renames + 1), size=4, replace=False))
    for moment in moments:
        out = tmp_path / f"killed_at_{moment}" / "run"
        killed = killable_run(out, int(moment), images)
        assert killed.returncode == 137, killed.stderr
        resumed = killable_run(out, 0, images)
        assert resumed.returncode == 0, resumed.stderr
        assert snapshot(out) == reference, f"killed before rename {moment} of {renames}"
