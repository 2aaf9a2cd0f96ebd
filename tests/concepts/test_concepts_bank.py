"""ConceptBank: save/load round trip, no pickle, order and top crops."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from concepts import EVERYWHERE_SPREAD, SCHEMA_VERSION, ConceptBank


def _bank(with_sobol: bool = True) -> ConceptBank:
    rng = np.random.default_rng(0)
    k, c, n, N = 3, 5, 8, 4
    return ConceptBank(
        W=rng.random((k, c), dtype=np.float32), U=np.array([[0.9, 0, 0], [0.8, 0, 0.1], [0.1, 0.5, 0], [0, 0.4, 0],
                                                           [0.2, 0, 0.7], [0.95, 0, 0], [0, 0.1, 0.2], [0, 0, 0.3]]),
        crop_boxes=rng.integers(0, 9, (n, 4)), crop_image_index=np.array([0, 0, 1, 1, 2, 2, 3, 3]),
        image_paths=[f"/data/img_{i}.jpg" for i in range(N)], contributions=rng.normal(size=(N, k)),
        residual=rng.normal(size=N), logits=rng.normal(size=N), importance_pct=np.array([20.0, 50.0, 30.0]),
        image_codes=rng.random((N, k)), bias=0.125, class_weight=rng.normal(size=c).astype(np.float32),
        model_id="tiny", layer="layer4", class_index=2, class_name="car", seed=3,
        reconstruction_error=0.5, relative_reconstruction_error=0.1,
        sobol=rng.random(k) if with_sobol else None, sobol_per_image=rng.random((N, k)) if with_sobol else None,
        skipped=[("/data/bad.jpg", "UnidentifiedImageError: cannot identify")],
    )


@pytest.mark.parametrize("with_sobol", [True, False])
def test_bank_save_load_round_trip_exact(tmp_path, with_sobol):
    bank = _bank(with_sobol)
    bank.save(tmp_path / "bank")
    loaded = ConceptBank.load(tmp_path / "bank")
    for name, value in vars(bank).items():
        other = getattr(loaded, name)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and np.array_equal(other, value), name
        else:
            assert other == value, name
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["arrays.npz", "bank.json"]  # no temp files
    meta = json.loads((tmp_path / "bank" / "bank.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION and "torch" in meta["versions"]


def test_load_directions_reads_the_directions_alone(tmp_path):
    bank = _bank()
    bank.save(tmp_path)
    directions = ConceptBank.load_directions(tmp_path)
    assert directions.dtype == np.float32 and np.array_equal(directions, bank.W)
    (tmp_path / "arrays.npz").unlink()
    with pytest.raises(OSError):
        ConceptBank.load_directions(tmp_path)


def test_bank_load_rejects_other_schema(tmp_path):
    _bank().save(tmp_path)
    meta = json.loads((tmp_path / "bank.json").read_text())
    meta["schema_version"] = 99
    (tmp_path / "bank.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="schema version"):
        ConceptBank.load(tmp_path)


def test_bank_order_and_top_crops():
    bank = _bank()
    assert bank.order.tolist() == [1, 2, 0] and bank.n_concepts == 3
    assert bank.top_crops(3) == [[5, 0, 2], [2, 6], [4, 7, 1]]  # zero coefficients never shown
    assert bank.top_crops(2, one_per_image=False)[0] == [5, 0]
    assert bank.crop_sources[2] == "/data/img_1.jpg"
    with pytest.raises(ValueError, match="`n` of `ConceptBank.top_crops`"):
        bank.top_crops(0)


def test_bank_save_is_byte_deterministic(tmp_path):
    bank = _bank()
    bank.save(tmp_path / "a")
    bank.save(tmp_path / "b")
    for name in ("arrays.npz", "bank.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with np.load(tmp_path / "a" / "arrays.npz", allow_pickle=False) as npz:
        assert "W" in npz.files and "sobol" in npz.files


def test_bank_arrays_are_deflated_and_readable_by_others(tmp_path):
    bank = _bank()
    bank.save(tmp_path / "a")
    with zipfile.ZipFile(tmp_path / "a" / "arrays.npz") as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    umask = os.umask(0)
    os.umask(umask)
    for name in ("arrays.npz", "bank.json"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_completeness_is_the_concepts_share_of_the_logit_above_the_bias(tiny_split, images):
    from concepts import extract_concepts

    bank = extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0, progress=False)
    expected = bank.contributions.sum(1).mean() / (bank.logits - bank.bias).mean()
    assert bank.completeness == pytest.approx(float(expected))
    # contributions + residual = logit - bias, so completeness + the residual's share is exactly 1
    assert bank.completeness + bank.residual.mean() / (bank.logits - bank.bias).mean() == pytest.approx(1.0)


def test_a_bank_fitted_on_crops_and_images_keeps_the_crops_codes(tiny_split, images):
    import torch

    from concepts import extract_concepts, extract_crops, extract_features

    bank = extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0,
                            fit_on="crops+images", progress=False)
    crops = extract_crops(images, patch_size=16, out_size=tiny_split.input_size)
    A = extract_features(tiny_split, crops).double()
    assert bank.fit_on == "crops+images" and bank.U.shape == (len(crops), 3)
    # the error reported is the crops' own, whatever rows the NMF was fitted on
    error = (A - torch.as_tensor(bank.U).double() @ torch.as_tensor(bank.W).double()).norm() / A.norm()
    assert bank.relative_reconstruction_error == pytest.approx(float(error), rel=1e-4)
    with pytest.raises(ValueError, match="`fit_on` of `extract_concepts` must be one of auto, crops, crops\\+images"):
        extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, fit_on="images", progress=False)


def test_coefficient_spread_tells_a_concept_in_every_crop_from_a_part():
    bank = _bank()
    U = np.zeros((8, 3))
    U[:, 0] = [1.0, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 1.0]  # in every crop alike: an offset
    U[[1, 4], 1] = [0.9, 0.7]  # a part: in two crops, absent from the others
    bank.U = U  # column 2 never used
    spread = bank.coefficient_spread
    assert spread[0] == pytest.approx(U[:, 0].std() / U[:, 0].mean()) and spread[0] < EVERYWHERE_SPREAD
    assert spread[1] > 1.5 and np.isnan(spread[2])
