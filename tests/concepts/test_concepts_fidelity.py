"""Concept-space fidelity on heads whose answer is known: one that reads a single concept only."""
from __future__ import annotations

import pytest
import torch

from concepts import concept_fidelity, curve_area


def _one_concept_world(n: int = 16, k: int = 4, reads: int = 2, seed: int = 0):
    """Concepts are the axes (W = I); class 0's logit reads concept ``reads`` only, the other classes nothing."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.eye(k)
    codes = 1.0 + torch.rand(n, k, generator=gen)
    features = codes @ W
    head = torch.nn.Linear(k, 3)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, reads] = 3.0
        head.bias.zero_()
    return features, codes, W, head


def test_ranking_that_finds_the_read_concept_beats_random_orders():
    features, codes, W, head = _one_concept_world()
    good = concept_fidelity(features, codes, W, head, 0, [2, 0, 1, 3], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    bad = concept_fidelity(features, codes, W, head, 0, [0, 1, 3, 2], torch.tensor([1.0, 1.0, 0.0, 1.0]))
    assert good.c_deletion.auc_ranking < good.c_deletion.auc_random_order < bad.c_deletion.auc_ranking
    assert good.c_insertion.auc_ranking > good.c_insertion.auc_random_order > bad.c_insertion.auc_ranking
    # the random baseline does not depend on the ranking under test
    assert good.c_deletion.auc_random_order == bad.c_deletion.auc_random_order
    # deletion starts at the model's own probability (residual kept) and insertion ends there
    p = head(features).softmax(1)[:, 0].mean().item()
    assert good.c_deletion.ranking[0] == pytest.approx(p, abs=1e-5)
    assert good.c_insertion.ranking[-1] == pytest.approx(p, abs=1e-5)
    # removing the read concept first drops the score to chance (1/3) at once
    assert good.c_deletion.ranking[1] == pytest.approx(1 / 3, abs=1e-5)
    assert good.c_mufidelity > 0.9
    # importance on the concepts that do nothing: its sums are independent of whether concept 2 is dropped
    assert abs(bad.c_mufidelity) < 0.3


def test_residual_is_kept_and_per_image_importances_are_used():
    features, codes, W, head = _one_concept_world(n=6)
    features = features + 0.5  # a residual the head reads too
    per_image = torch.zeros(6, 4)
    per_image[:, 2] = codes[:, 2]
    fid = concept_fidelity(features, codes, W, head, 0, [2, 0, 1, 3], per_image, seeds=3, subsets=32)
    assert fid.c_deletion.ranking[0] == pytest.approx(head(features).softmax(1)[:, 0].mean().item(), abs=1e-5)
    assert fid.c_mufidelity > 0.9 and fid.n_images == 6 and fid.seeds == 3 and fid.subsets == 32
    record = fid.to_dict()
    assert set(record["c_deletion"]) == {"ranking", "random_order", "auc_ranking", "auc_random_order"}
    assert record["score"] == "probability" and record["residual"] == "kept"


def test_curve_area_and_input_errors():
    assert curve_area([1.0, 0.0]) == 0.5 and curve_area([0.3]) == 0.3
    features, codes, W, head = _one_concept_world(n=4)
    with pytest.raises(ValueError, match="permutation"):
        concept_fidelity(features, codes, W, head, 0, [0, 1, 2], torch.ones(4))
    with pytest.raises(ValueError, match="importance"):
        concept_fidelity(features, codes, W, head, 0, [0, 1, 2, 3], torch.ones(3))
    with pytest.raises(ValueError, match="seeds"):
        concept_fidelity(features, codes, W, head, 0, [0, 1, 2, 3], torch.ones(4), seeds=1)


def test_mufidelity_is_none_when_no_removal_moves_the_score():
    features, codes, W, head = _one_concept_world(n=4)
    with torch.no_grad():
        head.weight.zero_()  # p(class) = 1/3 whatever the concepts
    fid = concept_fidelity(features, codes, W, head, 0, [0, 1, 2, 3], torch.ones(4), seeds=2, subsets=16)
    assert fid.c_mufidelity is None and fid.c_deletion.auc_ranking == pytest.approx(1 / 3, abs=1e-5)
