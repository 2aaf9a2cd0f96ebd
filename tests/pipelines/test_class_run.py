"""The class pipeline end to end on the demo world, at tiny budgets."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pipelines.run.stages as stages
from concepts import ConceptBank
from pipelines.cli import main
from maco import RenderResult, RenderSettings
from pipelines.demo.run import DEMO_CONFIG, demo_jobs
from pipelines.io import OutputNotWritableError
from pipelines.models import demo_model
from pipelines.run.cache import class_stamps
from pipelines.run.classes import run_classes

TINY_VIZ = RenderSettings(steps=3, image_size=64, crops=2, seed=0)
TINY = replace(DEMO_CONFIG, visualization=TINY_VIZ, inversion=TINY_VIZ, inversions=2, top_crops=4)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo") / "images"


def jobs_for(images: Path, classes=(0, 1)):
    jobs = demo_jobs(images, n_per_class=6)
    return [job for job in jobs if job.class_index in classes]


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_run_writes_every_output_and_records_it(images, tmp_path):
    (images / "000_lamp" / "broken.jpg").parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs_for(images)
    (jobs[0].folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    summary = run_classes(jobs, demo_model(), TINY, tmp_path, progress=False)
    assert summary.done == [0, 1] and not summary.failed
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "done" and run["config"]["visualization"]["steps"] == 3
    assert run["classes"]["0"]["status"] == "done" and run["versions"]["torch"]
    assert [s["path"].endswith("broken.jpg") for s in run["classes"]["0"]["skipped"]] == [True]
    for index in (0, 1):
        folder = tmp_path / "classes" / f"{index:04d}"
        record = json.loads((folder / "class.json").read_text())
        assert record["n_concepts"] == TINY.concepts.n_concepts == len(record["concepts"])
        importances = [c["importance_pct"] for c in record["concepts"]]
        assert importances == sorted(importances, reverse=True)
        assert len(record["inversions"]) == 2 and all(-1 <= inv["cosine"] <= 1 for inv in record["inversions"])
        for concept in record["concepts"]:
            for name in (
                concept["visualization"],
                concept["visualization_alpha"],
                concept["mosaic"],
                *concept["top_crops"],
            ):
                assert (folder / name).is_file(), name
        bank = ConceptBank.load(folder / "bank")
        assert bank.class_index == index and bank.W.shape == (5, 128)
        # where: maps over the most confident images and per concept; proof: deletion curves
        assert len(record["overlays"]) == min(TINY.map_images, record["n_images"])
        assert all((folder / name).is_file() for c in record["concepts"] for name in [*record["overlays"], *c["maps"]])
        assert sum(c["most_important_for"] for c in record["concepts"]) == record["n_images"]
        deletion = record["deletion"]
        assert len(deletion["ranking"]) == len(deletion["random_order"]) == record["n_concepts"] + 1
        assert deletion["ranking"][0] == deletion["random_regions"][0]  # nothing removed yet: the same images
        assert 0 <= deletion["auc_ranking"] <= 1 and 0 <= deletion["auc_random_order"] <= 1
        insertion = record["insertion"]  # from the blurred images, every concept's region put back in the end
        assert insertion["ranking"][-1] == pytest.approx(insertion["random_order"][-1], abs=1e-4)
        assert insertion["ranking"][0] == insertion["random_regions"][0] != deletion["ranking"][0]
        assert set(insertion) == set(deletion) and insertion["fill"] == "blur"
        fidelity = record["fidelity"]  # concept space, on every image of the class
        assert fidelity["n_images"] == record["n_images"]
        assert len(fidelity["c_deletion"]["ranking"]) == record["n_concepts"] + 1
        assert -1 <= fidelity["c_mufidelity"] <= 1 and record["importance"] == "exact on images"
        page = (folder / "index.html").read_text()
        # image deletion and insertion: 3 curves each; concept deletion and insertion: 2 each
        assert page.count("<polyline") == 10 and "Does the ranking hold?" in page and "maps/00_all.webp" in page
        assert "C-μFidelity" in page and "random regions" in page
        assert record["completeness"] == pytest.approx(round(bank.completeness, 4)) and "of the class evidence" in page
        assert 0 < record["reconstruction_error_images"] < 1.5
        assert len(record["clusters"]) == record["n_images"] and len(record["concept_layout"]) == record["n_concepts"]
        assert (folder / record["cluster_sprite"]).is_file() and page.count('class="pt"') == record["n_images"]
    assert (tmp_path / "index.html").is_file() and no_temp_files(tmp_path)
    os.remove(jobs[0].folder / "broken.jpg")


def test_pages_get_display_sized_webp_and_link_the_lossless_full_size(images, tmp_path):
    canvas = stages.DISPLAY_SIDE + 64
    big = replace(TINY_VIZ, image_size=canvas)
    config = replace(TINY, visualization=big, inversion=big, inversions=1)
    run_classes(jobs_for(images, classes=(2,)), demo_model(), config, tmp_path, progress=False)
    folder = tmp_path / "classes/0002"
    record = json.loads((folder / "class.json").read_text())
    pages = [p for sub in ("concepts", "inversions", "maps") for p in (folder / sub).iterdir()]
    assert pages and all(p.suffix == ".webp" for p in pages)  # no PNG pages, no float copies
    renders = RenderResult.load(folder / "renders/concepts")
    page = (folder / "index.html").read_text()
    for concept in record["concepts"]:
        full = folder / concept["visualization_full"]
        assert f'href="{concept["visualization_full"]}"' in page and record["files"][concept["visualization_full"]]
        with Image.open(full) as image:  # the render cache's own lossless image: the exact 8-bit pixels
            exact = np.asarray(image)
        assert exact.shape == (canvas, canvas, 3)
        assert np.array_equal(exact, (renders.images[concept["rank"]] * 255).round().byte().permute(1, 2, 0).numpy())
        with Image.open(folder / concept["visualization"]) as image:
            shown = np.asarray(image.convert("RGB"), dtype=np.float32)
        assert shown.shape == (stages.DISPLAY_SIDE, stages.DISPLAY_SIDE, 3)
        resized = np.asarray(Image.fromarray(exact).resize(shown.shape[:2], Image.Resampling.LANCZOS), np.float32)
        assert np.abs(shown - resized).mean() < 4  # lossy WebP at quality 85: a few levels of 255 on average
        with Image.open(folder / concept["mosaic"]) as image:
            assert image.width <= stages.MOSAIC_WIDTH
    with Image.open(folder / record["inversions"][0]["inversion"]) as image:
        assert max(image.size) == stages.DISPLAY_SIDE


def test_a_killed_run_resumes_without_redoing_finished_work(images, tmp_path, monkeypatch):
    jobs = jobs_for(images, classes=(0, 1, 2))
    real_maco = stages.render
    calls = {"maco": 0}

    def dies_on_second_class(*args, **kwargs):
        calls["maco"] += 1
        if calls["maco"] == 2:  # die in class 1's concept visualizations, after its bank was saved
            raise KeyboardInterrupt
        return real_maco(*args, **kwargs)

    monkeypatch.setattr(stages, "render", dies_on_second_class)
    with pytest.raises(KeyboardInterrupt):
        run_classes(jobs, demo_model(), TINY, tmp_path, progress=False)
    assert (tmp_path / "classes/0000/class.json").is_file()
    assert (tmp_path / "classes/0001/bank").is_dir() and not (tmp_path / "classes/0001/class.json").exists()
    assert no_temp_files(tmp_path)
    first = (tmp_path / "classes/0000/class.json").read_bytes()

    monkeypatch.setattr(stages, "render", real_maco)
    extracted = []
    real_extract = stages.extract_concepts
    monkeypatch.setattr(stages, "extract_concepts", lambda *a, **k: extracted.append(a[2]) or real_extract(*a, **k))
    summary = run_classes(jobs, demo_model(), TINY, tmp_path, progress=False)
    assert summary.skipped == [0] and summary.done == [1, 2]
    assert extracted == [2]  # class 1 reused its saved bank
    assert (tmp_path / "classes/0000/class.json").read_bytes() == first
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "done"


def test_a_rerun_with_another_number_of_concepts_computes_no_feature(images, tmp_path, monkeypatch):
    import concepts.feature_store

    computed = []
    for name in ("extract_features", "image_features"):  # the crops' pass, the whole images' pass
        real = getattr(concepts.feature_store, name)
        monkeypatch.setattr(concepts.feature_store, name,
                            lambda split, x, real=real, **kw: computed.append(len(x)) or real(split, x, **kw))
    jobs = jobs_for(images, classes=(4,))
    run_classes(jobs, demo_model(), TINY, tmp_path, progress=False, gallery=False)
    assert len(computed) == 2 and (tmp_path / "classes/0004/features/features.npz").is_file()  # crops, images
    computed.clear()
    auto = replace(TINY, concepts=replace(TINY.concepts, n_concepts="auto"))
    run_classes(jobs, demo_model(), auto, tmp_path, progress=False)
    assert computed == []  # the saved features served the new k
    folder = tmp_path / "classes/0004"
    record = json.loads((folder / "class.json").read_text())
    sweep = record["n_concepts_sweep"]
    assert record["n_concepts"] == sweep["chosen"] == len(record["concepts"]) and sweep["k"][0] == 2
    assert len(sweep["completeness"]) == len(sweep["reconstruction_error"]) == len(sweep["k"])
    page = (folder / "index.html").read_text()
    assert 'class="n-concepts-plot"' in page and page.count("<circle") >= len(sweep["k"])
    # without the feature cache (--no-feature-cache) the stage computes them and keeps nothing (the stage alone:
    # a whole third class run would only repeat what the first one checked)
    split, config = demo_model(), replace(TINY, keep_features=False)
    ctx = stages.ClassContext(job=jobs[0], split=split, config=config, device=torch.device("cpu"), progress=False,
                              folder=tmp_path / "b", stamps=class_stamps(jobs[0], split, config))
    features = stages.features_stage(ctx, stages.load_stage(ctx))
    assert len(computed) == 2 and len(features.images) == record["n_images"] and not (tmp_path / "b").exists()


def test_same_seed_same_outputs(images, tmp_path):
    jobs = jobs_for(images, classes=(3,))
    for name in ("a", "b"):
        run_classes(jobs, demo_model(), TINY, tmp_path / name, progress=False, gallery=False)
    for rel in (
        "classes/0003/concepts/00_viz.webp",
        "classes/0003/concepts/01_mosaic.webp",
        "classes/0003/bank/arrays.npz",
    ):
        a, b = tmp_path / "a" / rel, tmp_path / "b" / rel
        if a.exists():
            assert a.read_bytes() == b.read_bytes(), rel


def test_unwritable_output_folder_is_a_clear_error(images, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OutputNotWritableError, match="not writable"):
        run_classes(jobs_for(images, classes=(0,)), demo_model(), TINY, tmp_path / "file" / "run", progress=False)


def test_class_folder_names_with_html_show_as_text(images, tmp_path):
    folder = tmp_path / "<img src=x onerror=alert(1)>"
    folder.mkdir()
    for png in sorted((images / "000_lamp").glob("*.png"))[:4]:
        (folder / png.name).write_bytes(png.read_bytes())
    (folder / "<b>bad<b>.jpg").write_bytes(b"junk")
    job = replace(jobs_for(images, classes=(0,))[0], folder=folder)
    run_classes([job], demo_model(), TINY, tmp_path / "run", progress=False)
    page = (tmp_path / "run" / "classes" / "0000" / "index.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bad" not in page and "&lt;b&gt;bad&lt;b&gt;.jpg" in page


def test_file_names_that_are_not_utf8_are_used_and_shown_readably(images, tmp_path):
    job = jobs_for(images, classes=(0,))[0]  # writes the demo images
    folder = tmp_path / "latin1"
    folder.mkdir()
    pngs = sorted(job.folder.glob("*.png"))[:4]
    for png in pngs[1:]:
        (folder / png.name).write_bytes(png.read_bytes())
    raw = os.fsencode(folder)
    with open(raw + b"/caf\xe9.png", "wb") as handle:  # a valid image whose name is Latin-1, not UTF-8
        handle.write(pngs[0].read_bytes())
    with open(raw + b"/cass\xe9.jpg", "wb") as handle:  # and a broken one: skipped, listed
        handle.write(b"junk")
    job = replace(job, folder=folder)
    summary = run_classes([job], demo_model(), TINY, tmp_path / "run", progress=False)
    assert summary.done == [0]
    record = json.loads((tmp_path / "run" / "classes" / "0000" / "class.json").read_text(encoding="utf-8"))
    assert record["n_images"] == 4  # the Latin-1 photo is used
    assert [s["path"] for s in record["skipped"]] == [str(folder / "cass\\xe9.jpg")]
    page = (tmp_path / "run" / "classes" / "0000" / "index.html").read_bytes().decode("utf-8")  # valid UTF-8
    assert "cass\\xe9.jpg" in page and (tmp_path / "run" / "index.html").is_file()


def test_a_class_without_readable_images_fails_alone(images, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"junk")
    jobs = [replace(jobs_for(images, classes=(4,))[0], folder=broken), *jobs_for(images, classes=(5,))]
    summary = run_classes(jobs, demo_model(), TINY, tmp_path / "run", progress=False)
    assert summary.done == [5] and "no readable image" in summary.failed[4]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "incomplete" and run["classes"]["4"]["status"] == "failed"
    assert "1 skipped" in run["classes"]["4"]["error"]


def test_cli_errors_name_the_argument(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--images", str(tmp_path)])
    assert exit_info.value.code == 2 and "--class-index" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--image-size", "63"])
    assert "even" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_shards_classes_over_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "pipelines.cli",
        "-q",
        "demo",
        "--out",
        str(out),
        "--steps",
        "2",
        "--image-size",
        "64",
        "--crops",
        "2",
        "--images-per-class",
        "5",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [json.loads((out / "classes" / f"{c:04d}" / "class.json").read_text())["rank"] for c in range(6)]
    assert ranks == [0, 1, 0, 1, 0, 1]
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["status"] == "done"
    assert all(entry["status"] == "done" for entry in run["classes"].values())
    assert (out / "index.html").is_file()
