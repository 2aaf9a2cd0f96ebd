"""A rerun never keeps results made from other settings, weights or images, and repairs what is damaged."""

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import pipelines.run.stages as class_run
from concepts import ConceptBank
from pipelines.run.explain import class_stamps, unfinished_reason
from maco import RenderSettings
from pipelines.demo.run import DEMO_CONFIG, demo_jobs
from pipelines.models import demo_model
from pipelines.run.classes import run_classes
from pipelines.run.stamp import STAMP_FILE

TINY_VIZ = RenderSettings(steps=3, image_size=64, crops=2, seed=0)
TINY = replace(DEMO_CONFIG, visualization=TINY_VIZ, inversion=TINY_VIZ, inversions=1, top_crops=2)


def stamps_of(job, config=TINY):
    """The stamps a run makes for ``job``: from its settings as the run resolves them (``auto`` factorization)."""
    split = demo_model()
    return class_stamps(job, split, config.resolved(split))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "images"
    demo_jobs(root, n_per_class=5)
    return root


def job_for(images: Path, index: int = 0):
    return demo_jobs(images, n_per_class=5)[index]


def run(jobs, out: Path, config=TINY, **kwargs):
    return run_classes(jobs, demo_model(), config, out, progress=False, gallery=False, **kwargs)


def count_calls(monkeypatch, name: str) -> list:
    calls: list = []
    real = getattr(class_run, name)
    monkeypatch.setattr(class_run, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_other_settings_redo_the_stages_they_change_and_say_why(images, tmp_path, monkeypatch, caplog):
    job = job_for(images)
    run([job], tmp_path)
    extracted, rendered = count_calls(monkeypatch, "extract_concepts"), count_calls(monkeypatch, "render")
    longer = replace(TINY, visualization=replace(TINY_VIZ, steps=4))
    with caplog.at_level(logging.WARNING):
        summary = run([job], tmp_path, config=longer)
    assert summary.done == [0] and summary.skipped == []
    assert extracted == [] and rendered == [1]  # the bank is reused, the concept renders are redone
    assert "visualization.steps: 3 -> 4" in caplog.text
    record = json.loads((tmp_path / "classes/0000/class.json").read_text())
    assert record["stamp"]["inputs"]["concepts"] == stamps_of(job, longer).concepts.key
    renders = json.loads((tmp_path / "classes/0000/renders/concepts/result.json").read_text())
    assert renders["config"]["steps"] == 4
    assert json.loads((tmp_path / "run.json").read_text())["config"]["visualization"]["steps"] == 4
    # the same settings again: nothing is redone
    assert run([job], tmp_path, config=longer).skipped == [0]


def test_other_images_redo_the_bank_and_the_inversions(images, tmp_path, monkeypatch):
    first, second = job_for(images, 0), job_for(images, 1)
    run([first], tmp_path)
    (tmp_path / "classes/0000/class.json").unlink()
    extracted, rendered = count_calls(monkeypatch, "extract_concepts"), count_calls(monkeypatch, "render")
    inverted = count_calls(monkeypatch, "render_inversions")
    run([replace(first, folder=second.folder)], tmp_path)
    assert extracted == [1] and rendered == [1] and inverted == [1]
    bank = ConceptBank.load(tmp_path / "classes/0000/bank")
    assert all(Path(p).parent == second.folder for p in bank.image_paths)
    record = json.loads((tmp_path / "classes/0000/class.json").read_text())
    assert all((second.folder / inv["source"]).is_file() for inv in record["inversions"])  # relative to it


def test_other_weights_redo_everything(images, tmp_path, monkeypatch):
    job = job_for(images)
    run([job], tmp_path)
    extracted = count_calls(monkeypatch, "extract_concepts")
    split = demo_model()
    with torch.no_grad():
        next(split.model.parameters()).add_(0.01)
    run_classes([job], split, TINY, tmp_path, progress=False, gallery=False)
    assert extracted == [1]


def test_a_class_with_missing_or_damaged_files_is_repaired(images, tmp_path):
    job = job_for(images)
    run([job], tmp_path)
    folder = tmp_path / "classes/0000"
    viz, mosaic = folder / "concepts/00_viz.webp", folder / "concepts/01_mosaic.webp"
    good_viz, good_mosaic = viz.read_bytes(), mosaic.read_bytes()
    viz.unlink()
    stamp = stamps_of(job).record
    assert unfinished_reason(folder, stamp) == "concepts/00_viz.webp is missing"
    assert run([job], tmp_path).done == [0] and viz.read_bytes() == good_viz
    mosaic.write_bytes(good_mosaic[: len(good_mosaic) // 2])
    assert "concepts/01_mosaic.webp is damaged" in unfinished_reason(folder, stamp)
    assert run([job], tmp_path).done == [0] and mosaic.read_bytes() == good_mosaic
    assert unfinished_reason(folder, stamp) is None


@pytest.mark.parametrize(
    "damage",
    [
        ("bank/arrays.npz", b""),
        ("bank/arrays.npz", b"PK\x03\x04 truncated"),
        ("bank/bank.json", b"[1, 2]"),
        ("renders/concepts/tensors.npz", b""),
        ("renders/concepts/image_01.webp", b"RIFF\x00\x10\x00\x00WEBPVP8L truncated"),
        ("renders/concepts/alpha_00.png", b"\x89PNG\r\n\x1a\n truncated"),
        ("renders/inversions/image_00.webp", b""),
        ("renders/concepts/result.json", b'{"images": 3}'),
        ("renders/inversions/result.json", b"{not json"),
        ("bank/" + STAMP_FILE, b"{"),
    ],
)
def test_a_damaged_cache_file_is_redone_with_a_warning(images, tmp_path, caplog, damage):
    job = job_for(images)
    run([job], tmp_path)
    folder = tmp_path / "classes/0000"
    good = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.webp")}
    (folder / "class.json").unlink()
    (folder / damage[0]).write_bytes(damage[1])
    with caplog.at_level(logging.WARNING):
        summary = run([job], tmp_path)
    assert summary.done == [0] and not summary.failed
    assert "redoing" in caplog.text
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.webp")} == good


def test_a_failing_class_never_stops_the_others(images, tmp_path, monkeypatch):
    jobs = [job_for(images, 0), job_for(images, 1)]
    real = class_run.extract_concepts

    def fails_on_class_0(split, loaded, class_index, **kwargs):
        if class_index == 0:
            raise TypeError("an unexpected bug")
        return real(split, loaded, class_index, **kwargs)

    monkeypatch.setattr(class_run, "extract_concepts", fails_on_class_0)
    summary = run(jobs, tmp_path)
    assert summary.done == [1] and "TypeError: an unexpected bug" in summary.failed[0]
    status = json.loads((tmp_path / "run.json").read_text())
    assert status["status"] == "incomplete"
    assert status["classes"]["0"] == {**status["classes"]["0"], "status": "failed", "error": summary.failed[0]}
    assert status["classes"]["1"]["status"] == "done"


def test_an_interrupted_run_says_so_in_run_json(images, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(class_run, "extract_concepts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run([job_for(images)], tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"


def test_a_run_with_no_finished_class_builds_no_gallery(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.jpg").write_bytes(b"not an image")
    job = replace(demo_jobs(tmp_path / "images", n_per_class=1)[0], folder=empty)
    summary = run_classes([job], demo_model(), TINY, tmp_path / "run", progress=False)
    assert summary.gallery is None and not (tmp_path / "run/index.html").exists()
    assert json.loads((tmp_path / "run/run.json").read_text())["status"] == "incomplete"


def test_stale_pngs_of_a_larger_run_are_removed(images, tmp_path):
    job = job_for(images)
    run([job], tmp_path, config=replace(TINY, inversions=2))
    assert (tmp_path / "classes/0000/inversions/01_inv.webp").is_file()
    run([job], tmp_path, config=TINY)
    assert not (tmp_path / "classes/0000/inversions/01_inv.webp").exists()
    record = json.loads((tmp_path / "classes/0000/class.json").read_text())
    folder = tmp_path / "classes/0000"
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.webp")} - {
        p.relative_to(folder).as_posix() for p in (folder / "renders/inversions").glob("*.webp")}
    assert on_disk == set(record["files"])  # the pages' pictures, and the full-size visualizations they link


def test_moving_the_image_folder_is_a_change(images, tmp_path):
    job = job_for(images)
    copy = tmp_path / "copy"
    shutil.copytree(job.folder, copy)
    before = stamps_of(job)
    assert stamps_of(replace(job, folder=copy)).bank.key != before.bank.key
    (job.folder / "new.png").write_bytes((job.folder / sorted(p.name for p in job.folder.iterdir())[0]).read_bytes())
    try:
        assert stamps_of(job).bank.key != before.bank.key
    finally:
        (job.folder / "new.png").unlink()
    assert stamps_of(job).bank.key == before.bank.key
