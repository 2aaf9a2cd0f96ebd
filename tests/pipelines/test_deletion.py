"""Image-space curves: the right ranking deletes (and inserts) the class before a wrong one, with equal budgets."""

import pytest
import torch
from torch import nn

from concepts import ModelSplit
from pipelines.run.deletion import FILLS, blurred, concept_masks, image_curves, random_region_masks


class StripesLeft(nn.Module):
    """Class 0's logit is the contrast of red stripes in the image's left half: only pixels there matter, and
    grey, the image's mean and a blur all remove it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, 0, :, : x.shape[-1] // 2]
        contrast = (left[:, :, 1:] - left[:, :, :-1]).abs().mean((1, 2))
        return torch.stack([20 * (contrast - 0.4), torch.zeros_like(contrast)], dim=1)


@pytest.fixture
def split() -> ModelSplit:
    model = StripesLeft()
    return ModelSplit(g=model, h=nn.Identity(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=16,
                      model=model)


def images_and_maps(n: int = 3):
    images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    images[:, 0, :, 0:8:2] = 1.0  # red stripes on the left half: the class
    maps = torch.zeros(n, 3, 16, 16)
    maps[:, 0, :, :8] = 1.0 + torch.rand(n, 16, 8, generator=torch.Generator().manual_seed(1))  # concept 0: stripes
    maps[:, 1, :, 8:] = 1.0 + torch.rand(n, 16, 8, generator=torch.Generator().manual_seed(2))  # concept 1: the rest
    maps[:, 2] = torch.rand(n, 16, 16, generator=torch.Generator().manual_seed(3))  # concept 2: anywhere
    return images, maps


def test_masks_cover_exactly_the_share_where_each_concept_is_highest():
    _, maps = images_and_maps()
    masks = concept_masks(maps, 0.25)
    assert masks.shape == maps.shape and (masks.sum((2, 3)) == 64).all()
    assert masks[:, 0, :, :8].sum() == masks[:, 0].sum()  # concept 0's pixels are all on the left


def test_the_true_ranking_deletes_and_inserts_the_class_before_a_wrong_one(split):
    images, maps = images_and_maps()
    for fill in FILLS:
        right, right_in = image_curves(split, images, maps, [0, 2, 1], 0, share=0.4, seeds=3, fill=fill)
        wrong, wrong_in = image_curves(split, images, maps, [1, 2, 0], 0, share=0.4, seeds=3, fill=fill)
        assert len(right.ranking) == 4 and right.ranking[0] == pytest.approx(wrong.ranking[0])
        assert right.ranking[1] < right.ranking[0] - 0.2, fill  # the stripes went first
        assert right.auc_ranking < right.auc_random_order < wrong.auc_ranking, fill
        assert right.auc_ranking < right.auc_random_regions, fill
        assert right.random_order == wrong.random_order  # random orders do not depend on the ranking under test
        assert right_in.auc_ranking > right_in.auc_random_order > wrong_in.auc_ranking, fill
        assert right_in.auc_ranking > right_in.auc_random_regions, fill
        assert right.fill == fill and right_in.fill == "blur" and right.to_dict()["n_images"] == 3
        # nothing taken: deletion sees the image, insertion its blurred copy, whatever the order
        assert right.ranking[0] == right.random_order[0] == right.random_regions[0]
        assert right_in.ranking[0] == right_in.random_regions[0] < right.ranking[0]
    alone, none = image_curves(split, images, maps, [0, 2, 1], 0, share=0.4, seeds=3, fill="mean", insertion=False)
    assert none is None and alone == right  # the last fill of the loop: the same deletion without insertion


def test_random_regions_are_nested_contiguous_and_as_large_as_asked():
    counts = [0, 10, 40, 100, 256]
    masks = random_region_masks(counts, 16, 16, seed=1)
    assert [int(m.sum()) for m in masks] == counts
    assert all(bool((masks[j] <= masks[j + 1]).all()) for j in range(len(counts) - 1))  # each holds the previous


    def edges(mask: torch.Tensor) -> int:
        m = mask.int()
        return int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())

    # contiguous: a tenth of a 64 px image in blobs has a small fraction of the boundary of as many scattered pixels
    blobs = random_region_masks([410], 64, 64, seed=0)[0]
    scattered = torch.zeros(64 * 64, dtype=torch.bool)
    scattered[torch.randperm(64 * 64, generator=torch.Generator().manual_seed(0))[:410]] = True
    assert edges(blobs) < 0.25 * edges(scattered.view(64, 64))
    assert not torch.equal(masks[2], random_region_masks(counts, 16, 16, seed=2)[2])


def test_blur_removes_shapes_and_keeps_the_mean_colour():
    images, _ = images_and_maps(1)
    soft = blurred(images)
    assert soft.shape == images.shape
    stripes = (images[:, 0, :, 1:8] - images[:, 0, :, :7]).abs().mean()
    assert (soft[:, 0, :, 1:8] - soft[:, 0, :, :7]).abs().mean() < 0.2 * stripes
    assert soft.mean().item() == pytest.approx(images.mean().item(), abs=0.05)


def test_bad_inputs_are_named(split):
    images, maps = images_and_maps()
    with pytest.raises(ValueError, match="permutation"):
        image_curves(split, images, maps, [0, 0, 1], 0)
    with pytest.raises(ValueError, match="`maps` of image_curves"):
        image_curves(split, images, maps[:, :, :8], [0, 1, 2], 0)
    with pytest.raises(ValueError, match="`fill` of image_curves"):
        image_curves(split, images, maps, [0, 1, 2], 0, fill="black")
    with pytest.raises(ValueError, match="`share`"):
        concept_masks(maps, 0.0)
