"""Deletion curves: the right ranking deletes the class faster than a wrong one, and the budgets are equal."""

import pytest
import torch
from torch import nn

from concepts import ModelSplit
from pipelines.deletion import concept_masks, deletion_curves


class RedLeft(nn.Module):
    """Class 0's logit is the redness of the image's left half: only pixels there matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, 0, :, : x.shape[-1] // 2].mean((1, 2)) - x[:, 1:, :, : x.shape[-1] // 2].mean((1, 2, 3))
        return torch.stack([20 * (left - 0.5), torch.zeros_like(left)], dim=1)


@pytest.fixture
def split() -> ModelSplit:
    model = RedLeft()
    return ModelSplit(g=model, h=nn.Identity(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=16,
                      model=model)


def images_and_maps(n: int = 3):
    images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    images[:, 0, :, :8] = 1.0  # red left half: the class
    maps = torch.zeros(n, 3, 16, 16)
    maps[:, 0, :, :8] = 1.0 + torch.rand(n, 16, 8, generator=torch.Generator().manual_seed(1))  # concept 0: the red
    maps[:, 1, :, 8:] = 1.0 + torch.rand(n, 16, 8, generator=torch.Generator().manual_seed(2))  # concept 1: the rest
    maps[:, 2] = torch.rand(n, 16, 16, generator=torch.Generator().manual_seed(3))  # concept 2: anywhere
    return images, maps


def test_masks_cover_exactly_the_share_where_each_concept_is_highest():
    _, maps = images_and_maps()
    masks = concept_masks(maps, 0.25)
    assert masks.shape == maps.shape and (masks.sum((2, 3)) == 64).all()
    assert masks[:, 0, :, :8].sum() == masks[:, 0].sum()  # concept 0's pixels are all on the left


def test_the_true_ranking_deletes_the_class_before_a_wrong_one(split):
    images, maps = images_and_maps()
    right = deletion_curves(split, images, maps, [0, 2, 1], 0, share=0.4, seeds=3)
    wrong = deletion_curves(split, images, maps, [1, 2, 0], 0, share=0.4, seeds=3)
    assert len(right.ranking) == 4 and right.ranking[0] == pytest.approx(wrong.ranking[0])
    assert right.ranking[1] < right.ranking[0] - 0.2  # the red half went first
    assert right.auc_ranking < right.auc_random_order < wrong.auc_ranking
    assert right.auc_ranking < right.auc_random_pixels
    assert right.random_order == wrong.random_order  # random orders do not depend on the ranking under test
    assert right.to_dict()["n_images"] == 3


def test_bad_inputs_are_named(split):
    images, maps = images_and_maps()
    with pytest.raises(ValueError, match="permutation"):
        deletion_curves(split, images, maps, [0, 0, 1], 0)
    with pytest.raises(ValueError, match="`maps` of deletion_curves"):
        deletion_curves(split, images, maps[:, :, :8], [0, 1, 2], 0)
    with pytest.raises(ValueError, match="`share`"):
        concept_masks(maps, 0.0)
