"""benchmarks/concepts_real.py's per-class work and table, on a tiny model: no photos, weights or network needed."""

import sys
from pathlib import Path

import pytest
import torch

from concepts import concept_maps, extract_features, split_model
from pipelines.config import RunConfig
from pipelines.deletion import deletion_curves
from tests.concepts.conftest import TinyNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import concepts_real  # noqa: E402

CLASS = 1
AUCS = ("auc_ranking", "auc_random_order", "auc_random_pixels")


@pytest.fixture(scope="module")
def split():
    gen = torch.Generator().manual_seed(0)
    net = TinyNet(num_classes=6)  # the crop check takes the top 5
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return split_model(net.eval(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, model_id="tiny")


@pytest.fixture(scope="module")
def views() -> torch.Tensor:
    return torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def result(split, views):
    return concepts_real.class_row(split, views, CLASS, "dog", n_concepts=3, top=2, seed=0)


def test_a_class_row_records_the_class_pipelines_deletion_curves(split, views, result):
    row, bank, first, second = result
    deletion = row["deletion"]
    pipeline = RunConfig()
    assert deletion["n_images"] == min(len(views), pipeline.map_images)
    assert (deletion["share"], deletion["seeds"]) == (pipeline.deletion_share, pipeline.deletion_seeds)
    assert len(deletion["ranking"]) == bank.k + 1 and all(0 <= deletion[key] <= 1 for key in AUCS)
    assert deletion == concepts_real.view_deletion(split, bank, views, CLASS).to_dict()  # seeded: reproducible
    assert len(first) == len(second) == 2 and row["deletion_seconds"] >= 0


def test_deletion_runs_on_the_views_the_model_is_surest_of(split, views, result):
    bank = result[1]
    config = RunConfig(map_images=2)
    probs = split.logits(extract_features(split, views)).softmax(1)[:, CLASS]
    chosen = probs.argsort(descending=True)[:2].tolist()
    expected = deletion_curves(split, views[chosen], concept_maps(split, bank, views[chosen]),
                               [int(c) for c in bank.order], CLASS, share=0.1, seeds=3)
    assert concepts_real.view_deletion(split, bank, views, CLASS, config) == expected


def test_the_table_has_the_deletion_columns_a_mean_row_and_the_count(result):
    row = result[0]
    other = {**row, "class_index": 2, "name": "car",
             "deletion": {**row["deletion"], "auc_ranking": 0.1, "auc_random_order": 0.3, "auc_random_pixels": 0.05}}
    lines = concepts_real.table([row, other])
    assert lines[0].endswith("| AUC ranking | random order | random pixels |")
    cells = [line.strip("|").split("|") for line in lines[:5]]
    assert {len(c) for c in cells} == {12}
    assert [c.strip() for c in cells[3][-3:]] == ["0.100", "0.300", "0.050"]
    assert cells[4][0].strip() == "**mean**"
    mean_ranking = (row["deletion"]["auc_ranking"] + 0.1) / 2
    assert cells[4][-3].strip() == f"{mean_ranking:.3f}"
    beats = int(row["deletion"]["auc_ranking"] < row["deletion"]["auc_random_order"]) + 1
    assert f"the ranking beats random order in {beats} of 2 classes" in lines[-1]
    assert concepts_real.beats([row, other], "random_pixels") == int(
        row["deletion"]["auc_ranking"] < row["deletion"]["auc_random_pixels"])
