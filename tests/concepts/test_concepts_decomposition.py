"""How a decision splits into concepts (concepts.decomposition), on planted features whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from concepts import (EVERYWHERE_IMAGE_SPREAD, ClassFeatures, Decomposition, ModelSplit, extract_concepts, factorize,
                      grid_boxes, split_half_stability)
from concepts.decomposition import (decision_kept, important_concepts, matched_cosine, median_top_share, top_counts,
                                    top_shares)

PART_A, PART_B, EVERYWHERE, BACKGROUND = (slice(4 * j, 4 * j + 4) for j in range(4))


def planted(n_images: int = 120, seed: int = 0) -> ClassFeatures:
    """Photos of 2 x 2 positions on 16 channels: part A at position 0 and part B at position 1 (each of strength
    about 1, each in 70% of the photos, one at least in every photo), background at positions 2 and 3, and a
    component at the same strength in every position."""
    gen = torch.Generator().manual_seed(seed)
    has_b = torch.rand(n_images, generator=gen) < 0.7
    has_a = (torch.rand(n_images, generator=gen) < 0.7) | ~has_b
    positions = torch.zeros(n_images, 4, 16)
    positions[:, 0, PART_A] = has_a[:, None] * (0.8 + 0.4 * torch.rand(n_images, 1, generator=gen))
    positions[:, 1, PART_B] = has_b[:, None] * (0.8 + 0.4 * torch.rand(n_images, 1, generator=gen))
    positions[:, 2:, BACKGROUND] = torch.rand(n_images, 2, 1, generator=gen)
    positions[:, :, EVERYWHERE] = 0.5
    positions += 0.005 * torch.rand(positions.shape, generator=gen)
    return ClassFeatures(crops=positions.flatten(0, 1), images=positions.mean(1), positions=positions,
                         boxes=grid_boxes(32, 32, 16, 12).repeat(n_images, 1),
                         image_index=torch.arange(4 * n_images) // 4, patch_size=16, grid=(2, 2))


def head_split(reads: tuple[slice, ...] = (PART_A, PART_B)) -> ModelSplit:
    """A linear head: class 0 reads ``reads`` equally, class 1 the background, class 2 nothing (bias 0.1)."""
    head = nn.Linear(16, 3).requires_grad_(False)
    with torch.no_grad():
        head.weight.zero_()
        for part in reads:
            head.weight[0, part] = 1.0
        head.weight[1, BACKGROUND] = 0.5
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.1]))
    return ModelSplit(g=lambda x: x, h=head, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32,
                      head_weight=head.weight, head_bias=head.bias, model_id="planted")


def test_a_head_that_reads_two_planted_parts_equally_gives_two_important_concepts_and_a_top_share_near_half():
    features = planted()
    bank = extract_concepts(head_split(), torch.zeros(120, 3, 32, 32), 0, n_concepts=4, patch_size=16,
                            features=features, sobol_designs=0, progress=False)
    decomposition = Decomposition(**bank.decomposition)
    assert decomposition.important_concepts == 2
    assert sum(decomposition.top_counts) == 120 and sorted(decomposition.top_counts)[-2] >= 40
    assert 0.5 <= decomposition.median_top_share < 0.6
    assert decomposition.decision_kept == 1.0 and decomposition.decision_images == 120
    assert decomposition.stability > 0.95
    # the component at the same strength everywhere is found and named; the parts are not
    W = np.asarray(bank.W)
    everywhere = int(np.argmax(W[:, EVERYWHERE].sum(1) / W.sum(1)))
    assert bank.image_spread[everywhere] < 0.2 < EVERYWHERE_IMAGE_SPREAD  # NMF leaves it a little of the others
    assert bank.everywhere.tolist() == [c == everywhere for c in range(4)]
    assert decomposition.image_spread[everywhere] < 0.2
    assert all(v > EVERYWHERE_IMAGE_SPREAD for c, v in enumerate(decomposition.image_spread) if c != everywhere)


def test_a_head_that_reads_one_part_gives_one_important_concept_that_takes_the_whole_story():
    bank = extract_concepts(head_split((PART_A,)), torch.zeros(120, 3, 32, 32), 0, n_concepts=4, patch_size=16,
                            features=planted(), sobol_designs=0, progress=False)
    assert bank.decomposition["important_concepts"] == 1
    assert bank.decomposition["median_top_share"] > 0.99


def test_fitted_on_the_positions_an_images_codes_are_its_positions_mean_and_complete():
    features = planted()
    assert features.pooled_is_mean
    W, U, codes = factorize(features, 4, fit_on="positions")
    rebuilt = codes @ W
    assert torch.allclose(rebuilt, features.images, atol=0.02)
    assert U.shape == (len(features.crops), 4)  # the crops' codes: projected on the bank, for the top crops


def test_the_top_share_counts_only_positive_contributions_and_skips_images_without_any():
    contributions = np.array([[3.0, 1.0, -2.0], [1.0, 1.0, 0.0], [-1.0, -2.0, -0.5]])
    np.testing.assert_allclose(top_shares(contributions)[:2], [0.75, 0.5])
    assert np.isnan(top_shares(contributions)[2])
    assert median_top_share(contributions) == pytest.approx(0.625)
    assert top_counts(contributions).tolist() == [2, 0, 1]
    assert important_concepts(np.tile(contributions[:2], (10, 1))) == 1  # concept 0 top for all (ties: the first)


def test_matched_cosine_is_one_for_the_same_bank_in_another_order_and_zero_for_orthogonal_banks():
    rng = np.random.default_rng(0)
    W = rng.random((5, 12))
    weights = np.array([5.0, 4, 3, 2, 1])
    assert matched_cosine(W, W[[3, 1, 4, 0, 2]], weights, weights[[3, 1, 4, 0, 2]]) == pytest.approx(1.0)
    eye = np.eye(6)
    assert matched_cosine(eye[:3], eye[3:], np.ones(3), np.ones(3)) == pytest.approx(0.0)


def test_decision_kept_is_the_share_of_the_class_images_the_rebuilt_features_still_give_the_class():
    features, split = planted(), head_split()
    exact = torch.eye(16)
    assert decision_kept(split, features.images, features.images, exact, 0) == (1.0, 120)
    # a bank that cannot rebuild part B or A: only the bias of class 2 is left, the class is lost everywhere
    nothing = torch.zeros(1, 16)
    assert decision_kept(split, features.images, torch.zeros(120, 1), nothing, 0) == (0.0, 120)
    assert decision_kept(split, features.images, features.images, exact, 1) == (None, 0)


def test_split_half_stability_is_high_on_planted_parts_and_none_when_a_half_is_too_small():
    features, split = planted(), head_split()
    assert split_half_stability(split, features, 0, 4, solver="hals", fit_on="positions", factorization="nmf") > 0.99
    few = features.subset(torch.arange(2))
    assert split_half_stability(split, few, 0, 6, solver="hals", fit_on="positions", factorization="nmf") is None


def test_features_subset_keeps_each_images_crops_and_positions():
    features = planted(6)
    half = features.subset(torch.tensor([1, 3, 5]))
    assert torch.equal(half.images, features.images[[1, 3, 5]])
    assert torch.equal(half.positions, features.positions[[1, 3, 5]])
    assert half.image_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(half.crops, features.crops[features.image_index % 2 == 1])


def test_a_concept_is_called_in_every_photo_alike_only_over_enough_photos():
    """Over 8 photos a spread says little (a part in each of them looks alike): the photo rule waits for
    EVERYWHERE_MIN_IMAGES photos; the crop rule does not change."""
    from concepts import EVERYWHERE_MIN_IMAGES

    def bank(n_images: int):
        return extract_concepts(head_split(), torch.zeros(n_images, 3, 32, 32), 0, n_concepts=4, patch_size=16,
                                features=planted(n_images), sobol_designs=0, stability=False, progress=False)

    many, few = bank(120), bank(8)
    assert 8 < EVERYWHERE_MIN_IMAGES <= 120
    assert many.everywhere.sum() == 1 and (many.image_spread < EVERYWHERE_IMAGE_SPREAD).sum() == 1
    # the figure is measured (the decomposition keeps it) but the bank calls it too few to tell
    assert min(v for v in few.decomposition["image_spread"] if v is not None) < EVERYWHERE_IMAGE_SPREAD
    assert np.isnan(few.image_spread).all() and not few.everywhere.any()
    assert many.decomposition["stability"] is None  # stability=False: no half fits
