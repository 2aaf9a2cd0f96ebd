"""One writer per run folder, and a run killed or meeting a full disk at any moment resumes to the same bytes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.demo.run import demo_jobs
from pipelines.run.lock import LOCK_FILE, RunLockedError, lock_holder, run_lock

from .fault_runner import fault_runs, snapshot

HOLD_LOCK = "import sys, time\nfrom pipelines.run.lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
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
# Fault injection (tests/pipelines/fault_runner.py): the command line's N-th rename, i.e. the moment a written temp
# file would become an output, is faulted; the resumed run must end with the same files as a run never faulted.


def check_moments(root: Path, summary: dict, fault_code: int) -> None:
    """Every faulted run stopped with ``fault_code``, left no temp file, and its resume made the reference's files."""
    assert summary["reference"]["code"] == 0, summary["reference"]["output"]
    reference = snapshot(root / "reference" / "run")
    assert any(name.endswith("_mosaic.webp") for name in reference) and "index.html" in reference
    for moment in summary["moments"]:
        at, faulted, resumed = moment["at"], moment["faulted"], moment["resumed"]
        out = root / f"at_{at}" / "run"
        assert faulted["code"] == fault_code, f"rename {at}: {faulted['output']}"
        assert resumed["code"] == 0, f"after rename {at}: {resumed['output']}"
        assert not [p for p in out.rglob("*.tmp")], f"a temp file of rename {at} is left"
        assert [p.name for p in out.parent.iterdir()] == ["run"], f"rename {at}: a file written outside --out"
        assert snapshot(out) == reference, f"faulted at rename {at} of {summary['renames']}"


@pytest.mark.slow
def test_a_run_killed_at_seeded_moments_resumes_to_identical_outputs(tmp_path):
    images = tmp_path / "images"
    demo_jobs(images, n_per_class=4)
    summary = fault_runs(images, tmp_path / "kill", "kill", "12", "0-1")  # two classes: a kill between them too
    check_moments(tmp_path / "kill", summary, 137)


@pytest.mark.slow
def test_a_full_disk_at_any_write_stops_with_the_fix_and_resumes_to_identical_outputs(tmp_path):
    """ENOSPC at every write of a class run and its gallery: the path and the fix, no traceback, the same bytes."""
    images = tmp_path / "images"
    demo_jobs(images, n_per_class=4)
    summary = fault_runs(images, tmp_path / "full", "enospc", "all", "0")
    assert summary["renames"] >= 40  # the bank, the renders, the pictures, the maps, the record, run.json, gallery
    check_moments(tmp_path / "full", summary, 2)
    for moment in summary["moments"]:
        output, out = moment["faulted"]["output"], tmp_path / "full" / f"at_{moment['at']}" / "run"
        assert f"concept-lens run: error: cannot write {out}/" in output and "No space left" in output, output
        assert "free some space or choose another --out" in output and "Traceback" not in output, output
