"""The evaluation code itself is right: real images score as transferable and plausible, purity is exact."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.demo import CLASS_NAMES, DEMO_INPUT_SIZE, PART_NAMES, DemoWorld
from pipelines.demo.experiment import evaluate_demo
from pipelines.models import demo_model
from pipelines.evaluate import (concept_purity, layer_feature_fn, plausibility, reference_features, retrieval,
                                transferability)

@pytest.fixture(scope="module")
def model_b():
    return demo_model("b")


@pytest.fixture(scope="module")
def world_split():
    world = DemoWorld(image_size=DEMO_INPUT_SIZE)
    refs, ref_labels, _ = world.dataset(6, seed=500)
    held, held_labels, _ = world.dataset(10, seed=501)  # 60 images
    return refs, ref_labels, held, held_labels


def test_real_images_are_transferable_to_model_b(model_b, world_split):
    _, _, held, labels = world_split
    result = transferability(held, labels, model_b)
    assert result["top1"] >= 0.9  # model b: 99.3% on 600 held-out images (carts shown by their wheels alone are hard)
    assert result["top5"] == 1.0  # six classes: top-5 is reported and real images are always in it
    assert len(result["correct"]) == len(held) == len(result["predicted"])


def test_transferability_resizes_canvases_of_any_size(model_b, world_split):
    _, _, held, labels = world_split
    upscaled = torch.nn.functional.interpolate(held, size=256, mode="bilinear", align_corners=False)
    assert transferability(upscaled, labels, model_b)["top1"] >= 0.9


def test_real_images_are_more_plausible_than_noise_and_other_classes(model_b, world_split):
    refs, ref_labels, held, labels = world_split
    feature_fn = layer_feature_fn(model_b, "avgpool")
    by_class = {c: refs[ref_labels == c] for c in range(len(CLASS_NAMES))}
    feats = reference_features(by_class, feature_fn)
    real = plausibility(held, labels, feats, feature_fn)
    noise = plausibility(torch.rand(len(held), 3, 128, 128, generator=torch.Generator().manual_seed(0)), labels,
                         feats, feature_fn)
    other = plausibility(held, (labels + 1) % len(CLASS_NAMES), feats, feature_fn)
    assert real["mean"] < noise["mean"] and real["mean"] < other["mean"]
    assert all(0.0 <= d <= 2.0 for d in real["distance"])
    # images or precomputed features as references give the same distances
    again = plausibility(held, labels, by_class, feature_fn)
    assert np.allclose(again["distance"], real["distance"], atol=1e-5)


def test_plausibility_of_a_reference_image_is_zero():
    feature_fn = lambda images: images.flatten(1)  # noqa: E731
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    result = plausibility(images[:1], [2], {2: images}, feature_fn)
    assert result["distance"][0] == pytest.approx(0.0, abs=1e-6) and result["nearest"] == [0]


def test_retrieval_ranks_the_class_among_other_classes():
    feature_fn = lambda images: images.flatten(1)  # noqa: E731
    gallery_images = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    gallery_labels = [10, 11, 12, 13, 14, 14]  # class 14 has two real images
    gallery = feature_fn(gallery_images)
    real = retrieval(gallery_images, gallery_labels, gallery, gallery_labels, feature_fn)
    assert real["rank"] == [1] * 6 and real["r1"] == 1.0 and real["nearest_any"] == pytest.approx(0.0, abs=1e-6)
    # an image equal to the real image of class 10, labelled 12: ranked behind exactly class 10's image
    # (and behind any other class closer than class 12's image)
    sims = torch.nn.functional.cosine_similarity(gallery[:1], gallery)
    expected = 1 + int(((sims > sims[2]) & (torch.arange(6) != 2)).sum())
    moved = retrieval(gallery_images[:1], [12], gallery, gallery_labels, feature_fn)
    assert moved["rank"] == [expected] and expected >= 2 and moved["r1"] == 0.0
    with pytest.raises(ValueError, match="missing classes \\[99\\]"):
        retrieval(gallery_images[:1], [99], gallery, gallery_labels, feature_fn)


def _masks() -> torch.Tensor:
    """Image 0: disc everywhere; image 1: post on the left half, background on the right."""
    masks = torch.zeros(2, len(PART_NAMES), 16, 16, dtype=torch.bool)
    masks[0, PART_NAMES.index("disc")] = True
    masks[1, PART_NAMES.index("post"), :, :8] = True
    return masks


def test_concept_purity_exact_values():
    boxes = [
        [[0, 0, 8, 8], [8, 8, 16, 16]],   # both in image 0: disc, disc -> pure
        [[0, 0, 8, 8], [0, 0, 8, 16]],    # disc (image 0), post (image 1) -> mixed
        [[8, 0, 16, 16]],                 # image 1, right half: no part -> background
        [],                               # no top patch
    ]
    image_index = [[0, 0], [0, 1], [1], []]
    result = concept_purity(boxes, image_index, _masks(), PART_NAMES)
    assert result["per_concept"] == [1.0, 0.5, 1.0, None]
    assert result["labels"][0] == "disc" and result["labels"][2] == "background" and result["labels"][3] is None
    assert result["dominant"][1] == ["disc", "post"]
    assert result["mean"] == pytest.approx(2.5 / 3)


def test_concept_purity_background_threshold():
    masks = torch.zeros(1, len(PART_NAMES), 10, 10, dtype=torch.bool)
    masks[0, PART_NAMES.index("roof"), 0, :] = True  # 10 % of a 10 x 10 box
    assert concept_purity([[[0, 0, 10, 10]]], [[0]], masks, PART_NAMES)["labels"] == ["roof"]
    assert concept_purity([[[0, 0, 10, 10]]], [[0]], masks, PART_NAMES, min_coverage=0.2)["labels"] == ["background"]
    assert math.isnan(concept_purity([[]], [[]], masks, PART_NAMES)["mean"])


def test_concept_purity_rejects_bad_masks():
    with pytest.raises(ValueError, match="masks"):
        concept_purity([[[0, 0, 4, 4]]], [[0]], torch.zeros(1, 3, 8, 8, dtype=torch.bool), PART_NAMES)
    with pytest.raises(ValueError, match="one entry per concept"):
        concept_purity([[[0, 0, 4, 4]]], [], _masks(), PART_NAMES)


def test_inputs_are_checked(model_b, world_split):
    _, _, held, labels = world_split
    with pytest.raises(ValueError, match="labels"):
        transferability(held, labels[:-1], model_b)
    with pytest.raises(ValueError, match="missing classes"):
        plausibility(held[:1], [5], {0: held[:2]}, lambda x: x.flatten(1))
    with pytest.raises(ValueError, match="methods"):
        evaluate_demo(methods=("deepdream",))


def test_evaluate_demo_tiny_run_has_every_key():
    result = evaluate_demo(steps=2, image_size=64, crops=2, seeds=(0,), n_reference=3, n_heldout=2,
                           n_concept_images=4, n_concepts=2, top_patches=3)
    assert set(result["methods"]) == {"maco", "fourier", "pixels"}
    for name, scores in result["methods"].items():
        assert {"top1", "top5", "self_top1", "plausibility", "per_target", "seconds", "images"} <= set(scores), name
        assert 0.0 <= scores["top1"] <= 1.0 and scores["plausibility"] >= 0.0
        assert scores["images"].shape == (len(CLASS_NAMES), 3, 64, 64)
        assert len(scores["per_target"]) == len(CLASS_NAMES)
    assert result["baselines"]["real"]["top1"] >= 0.9  # 12 images; model b is 99.3% accurate
    assert result["baselines"]["real"]["plausibility"] < result["baselines"]["noise"]["plausibility"]
    purity = result["concept_purity"]
    assert set(purity["per_class"]) == set(CLASS_NAMES) and 0.0 < purity["mean"] <= 1.0


def test_evaluate_demo_reports_purity_computed_elsewhere():
    given = {"mean": 0.75, "per_class": {}}
    result = evaluate_demo(steps=1, image_size=64, crops=1, methods=("pixels",), n_reference=2, n_heldout=1,
                           purity_result=given)
    assert result["concept_purity"] is given and list(result["methods"]) == ["pixels"]
