"""End to end on a tiny CNN: extract_concepts, crop_image, concept_maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts import ConceptBank, LoadedImages, concept_maps, crop_image, extract_concepts, extract_features


@pytest.mark.parametrize("solver", ["hals", "sklearn"])
def test_extract_concepts_end_to_end(tiny_net, tiny_split, images, solver, tmp_path):
    loaded = LoadedImages(images=images, paths=[f"/x/{i}.jpg" for i in range(6)], skipped=[("/x/bad.jpg", "bad")])
    bank = extract_concepts(tiny_split, loaded, 3, n_concepts=4, patch_size=16, solver=solver, sobol_designs=16,
                            progress=False)
    assert bank.W.shape == (4, 16) and bank.U.shape == (24, 4) and bank.n_concepts == 4
    assert bank.class_name == "hot dog" and bank.layer == "layer4" and bank.model_id == "tiny"
    assert bank.skipped == [("/x/bad.jpg", "bad")] and bank.crop_sources[5] == "/x/1.jpg"
    assert 0 <= bank.relative_reconstruction_error < 1
    with torch.no_grad():
        logits = tiny_net(tiny_split.normalize(images))[:, 3].double().numpy()
    np.testing.assert_allclose(bank.contributions.sum(1) + bank.residual + bank.bias, logits, atol=1e-5)
    np.testing.assert_allclose(bank.importance_pct.sum(), 100.0)
    assert bank.sobol.shape == (4,) and bank.sobol_per_image.shape == (6, 4) and np.isfinite(bank.sobol).all()
    top = bank.top_crops(3)
    assert len(top) == 4 and all(len(set(bank.crop_image_index[t])) == len(t) for t in top)
    patch = crop_image(loaded, bank, top[0][0])
    assert patch.shape == (3, 16, 16) and float(patch.min()) >= 0 and float(patch.max()) <= 1
    bank.save(tmp_path)
    assert np.array_equal(ConceptBank.load(tmp_path).U, bank.U)


def test_extract_concepts_is_deterministic(tiny_split, images):
    a = extract_concepts(tiny_split, images, 0, n_concepts=3, patch_size=16, progress=False)
    b = extract_concepts(tiny_split, images, 0, n_concepts=3, patch_size=16, progress=False)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.sobol, b.sobol)
    assert a.image_paths[0] == "<tensor>:0"


def test_extract_concepts_too_few_crops_says_how_many_images(tiny_split, images):
    with pytest.raises(ValueError, match="got 4 \\(1 images x 4 crops of 16 px\\). Pass at least 3 images"):
        extract_concepts(tiny_split, images[:1], 0, n_concepts=10, patch_size=16, progress=False)


def test_extract_concepts_argument_errors(tiny_split, images):
    with pytest.raises(ValueError, match="`class_index` of `extract_concepts` must be an int in \\[0, 3\\]"):
        extract_concepts(tiny_split, images, 4, progress=False)
    with pytest.raises(TypeError, match="`images` of `extract_concepts`"):
        extract_concepts(tiny_split, images.numpy(), 0, progress=False)


def test_concept_maps_shape_and_consistency(tiny_split, images):
    bank = extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0, progress=False)
    assert bank.sobol is None
    maps = concept_maps(tiny_split, bank, images[:2])
    assert maps.shape == (2, 3, 32, 32) and float(maps.min()) >= 0
    grid = concept_maps(tiny_split, bank, images[:2], upsample=False)
    assert grid.shape == (2, 3, 8, 8)
    # the codes at each position reconstruct the spatial features as well as NNLS can: check one position
    feats = extract_features(tiny_split, images[:2], pooled=False)
    a = feats[0, :, 3, 4]
    u = grid[0, :, 3, 4]
    W = torch.as_tensor(bank.W)
    base = (a - u @ W).norm()
    for j in range(3):  # no single-coordinate move improves the fit
        for delta in (1e-2, -1e-2):
            v = u.clone()
            v[j] = (v[j] + delta).clamp_min(0)
            assert (a - v @ W).norm() >= base - 1e-4
