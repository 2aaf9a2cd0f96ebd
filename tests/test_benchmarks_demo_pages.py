"""benchmarks/demo_pages.py on a tiny demo run: every number it reports comes from the run and the world."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from maco import RenderSettings
from pipelines.demo import DEMO_INPUT_SIZE, PART_NAMES, DemoWorld
from pipelines.demo.run import DEMO_CONFIG, demo_jobs
from pipelines.models import demo_model
from pipelines.run.classes import run_classes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import demo_pages  # noqa: E402

TINY_VIZ = RenderSettings(steps=2, image_size=64, crops=2, seed=0)
TINY = replace(DEMO_CONFIG, visualization=TINY_VIZ, inversion=TINY_VIZ, inversions=0, top_crops=4)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pages")
    jobs = [job for job in demo_jobs(root / "images", n_per_class=8) if job.class_index == 1]
    run_classes(jobs, demo_model(), TINY, root / "run", progress=False, gallery=False)
    return root / "run"


def test_a_class_row_reads_the_record_and_checks_parts_against_the_world(run_dir):
    row = demo_pages.class_row(run_dir, 1, demo_model(), DemoWorld(DEMO_INPUT_SIZE), strip=2)
    record = json.loads((run_dir / "classes/0001/class.json").read_text())
    deletion, insertion, fidelity = record["deletion"], record["insertion"], record["fidelity"]
    assert row["class"] == "flag" and len(row["concepts"]) == TINY.concepts.n_concepts
    assert [c["rank"] for c in row["concepts"]] == sorted(c["rank"] for c in row["concepts"])
    assert row["auc"] == [deletion["auc_ranking"], deletion["auc_random_order"], deletion["auc_random_regions"]]
    assert row["insertion"] == [insertion[k] for k in ("auc_ranking", "auc_random_order", "auc_random_regions")]
    assert row["c_deletion"] == [fidelity["c_deletion"]["auc_ranking"], fidelity["c_deletion"]["auc_random_order"]]
    assert row["c_mufidelity"] == fidelity["c_mufidelity"]
    for concept in row["concepts"]:
        assert concept["part"] in (*PART_NAMES, "background") and 0 <= concept["purity"] <= 1
        assert concept["map_tries"] == (2 if concept["part"] != "background" else 0)
        assert 0 <= concept["map_hits"] <= concept["map_tries"]
    assert row["important"] == sum(c["importance_pct"] >= 15 for c in row["concepts"])
    text = demo_pages.table([row])
    assert text.startswith("| class |") and "| flag |" in text and "of 1 classes" in text
    assert "C-Insertion beats random order in" in text


def test_the_run_report_tables_every_class_and_counts_the_wins(run_dir, capsys, tmp_path):
    import run_report

    run_report.main([str(run_dir), "--json", str(tmp_path / "r.json")])
    text = capsys.readouterr().out
    record = json.loads((run_dir / "classes/0001/class.json").read_text())
    assert "| flag | 8 |" in text and "C-Insertion > random order in" in text
    won = run_report.wins([record])
    assert won["deletion < random regions"] == int(record["deletion"]["auc_ranking"]
                                                   < record["deletion"]["auc_random_regions"])
    assert json.loads((tmp_path / "r.json").read_text())[0]["fidelity"] == record["fidelity"]


def test_the_network_is_read_from_the_run(run_dir, tmp_path):
    assert demo_pages.run_network(run_dir) == "a"
    (tmp_path / "run.json").write_text(json.dumps({"model_id": "torchvision/resnet50/IMAGENET1K_V2"}))
    with pytest.raises(ValueError, match="not a `concept-lens demo` run"):
        demo_pages.run_network(tmp_path)
