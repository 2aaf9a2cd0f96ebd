"""Features computed once (ClassFeatures) and k chosen by completeness (sweep_n_concepts, n_concepts="auto")."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts import (ClassFeatures, ConceptBank, class_features, extract_concepts, split_model,
                      sweep_n_concepts)

from .conftest import TinyNet


def planted_split_and_features(read: int = 3) -> tuple:
    """Four concepts on disjoint channels with energies 4 > 3 > 2 > 1; the head's class 0 reads concept ``read``.

    An NMF with fewer than four components drops the weakest concepts first, so when the head reads the
    weakest (``read=3``) the class's evidence is carried from k = 4 on, and not before.
    """
    net = TinyNet().eval()
    W = torch.zeros(4, 16)
    for j in range(4):
        W[j, 4 * j : 4 * j + 4] = 1.0
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.weight[0] = W[read]
        net.fc.bias.fill_(0.5)
    split = split_model(net, input_size=32, model_id="planted", mean=(0.5,) * 3, std=(0.25,) * 3)
    gen = torch.Generator().manual_seed(0)
    U = torch.rand(500, 4, generator=gen) ** 2 * torch.tensor([4.0, 3.0, 2.0, 1.0])
    A = U @ W + 0.01 * torch.rand(500, 16, generator=gen)
    features = ClassFeatures(crops=A[:400], images=A[400:], positions=A[400:, None], grid=(1, 1),  # 1 x 1 maps
                             boxes=torch.zeros(400, 4, dtype=torch.long), image_index=torch.arange(400) // 4,
                             patch_size=16)
    return split, features


def test_the_sweep_finds_the_planted_number_of_concepts():
    split, features = planted_split_and_features()
    sweep = sweep_n_concepts(split, features, 0, candidates=(1, 2, 3, 4, 5, 6, 8), threshold=0.9,
                             fit_on="crops+images", progress=False)  # the 500 rows of the planted mixture
    assert sweep.k == [1, 2, 3, 4, 5, 6, 8]
    assert sweep.chosen == 4 and sweep.reached
    assert max(sweep.completeness[:3]) < 0.8 and min(sweep.completeness[3:]) > 0.99
    # the reconstruction error falls to the noise once the four concepts are there
    assert sweep.reconstruction_error[2] > 0.1 > 0.01 > sweep.reconstruction_error[3]
    assert sweep.reconstruction_error_images[3] < 0.01


def test_an_unreached_threshold_chooses_the_most_complete_k_and_says_so():
    split, features = planted_split_and_features()
    sweep = sweep_n_concepts(split, features, 0, candidates=(1, 2, 3), threshold=0.9, progress=False)
    assert not sweep.reached
    assert sweep.chosen == [1, 2, 3][int(np.argmax(sweep.completeness))]


def test_the_sweep_refuses_what_it_cannot_measure():
    split, features = planted_split_and_features()
    with pytest.raises(ValueError, match="`candidates` of `sweep_n_concepts` must hold a k in \\[1, 16\\]"):
        sweep_n_concepts(split, features, 0, candidates=(40,), progress=False)
    with pytest.raises(ValueError, match="`factorization` of `sweep_n_concepts` must be one of nmf, semi-nmf"):
        sweep_n_concepts(split, features, 0, factorization="pca", progress=False)


def test_the_sweep_through_any_head_measures_with_gradient_x_input():
    split, features = planted_split_and_features()
    exact = sweep_n_concepts(split, features, 0, candidates=(2, 4), progress=False)
    split.head_weight = None  # the same (linear) head seen as any head: gradient x input equals the exact share
    through_head = sweep_n_concepts(split, features, 0, candidates=(2, 4), progress=False)
    assert through_head.chosen == exact.chosen
    assert through_head.completeness == pytest.approx(exact.completeness, abs=1e-4)


def test_class_features_round_trip_and_damage_is_refused(tiny_split, images, tmp_path):
    features = class_features(tiny_split, images, patch_size=16, progress=False)
    assert features.crops.shape == (len(images) * 4, 16) and features.images.shape == (len(images), 16)
    features.save(tmp_path / "f")
    again = ClassFeatures.load(tmp_path / "f")
    for name in ("crops", "images", "boxes", "image_index"):
        assert torch.equal(getattr(again, name), getattr(features, name)), name
    assert again.patch_size == 16
    (tmp_path / "f" / "features.npz").write_bytes(b"not a zip")
    with pytest.raises(Exception):
        ClassFeatures.load(tmp_path / "f")


def test_given_features_compute_no_forward_pass_and_give_the_same_bank(tiny_split, images):
    features = class_features(tiny_split, images, patch_size=16, progress=False)
    calls = []
    hook = tiny_split.model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape))
    try:
        reused = extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0,
                                  features=features, progress=False)
    finally:
        hook.remove()
    fresh = extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0, progress=False)
    assert calls == []  # no model forward: the head's own calls go through `h`, never the whole model
    np.testing.assert_array_equal(reused.W, fresh.W)
    np.testing.assert_array_equal(reused.contributions, fresh.contributions)
    with pytest.raises(ValueError, match="`features` of `extract_concepts` must be the ClassFeatures of the 6 "
                                         "images with patch_size=8"):
        extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=8, features=features, progress=False)


def test_auto_keeps_the_sweep_in_the_bank(tiny_split, images, tmp_path):
    bank = extract_concepts(tiny_split, images, 1, n_concepts="auto", patch_size=16, sobol_designs=0,
                            progress=False)
    sweep = bank.n_concepts_sweep
    assert sweep is not None and bank.n_concepts == sweep["chosen"] and sweep["k"] == [2, 4, 6, 8, 10, 12, 16]
    assert bank.n_concepts in sweep["k"]
    assert ConceptBank.load(bank.save(tmp_path / "bank")).n_concepts_sweep == sweep
    assert extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0,
                            progress=False).n_concepts_sweep is None
