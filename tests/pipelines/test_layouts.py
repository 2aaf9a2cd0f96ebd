"""Layouts: PCA coordinates are deterministic and in [0, 1]; the sprite tiles every image in order."""

import numpy as np
import torch

from pipelines.run.layouts import SPRITE_CELL, pca_2d, thumbnail_sprite


def test_pca_separates_two_groups_and_is_deterministic():
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.normal(0, 0.1, (10, 5)), rng.normal(3, 0.1, (10, 5))])
    coords = pca_2d(rows)
    assert coords.shape == (20, 2) and coords.min() >= 0 and coords.max() <= 1
    assert abs(coords[:10, 0].mean() - coords[10:, 0].mean()) > 0.8  # the groups fall apart on the first axis
    np.testing.assert_array_equal(coords, pca_2d(rows))
    perm = rng.permutation(20)
    np.testing.assert_allclose(pca_2d(rows[perm]), coords[perm], atol=1e-9)  # the order of the images is no input
    assert pca_2d(rows[:1]).tolist() == [[0.5, 0.5]]


def test_sprite_tiles_images_row_major():
    images = torch.zeros(5, 3, 20, 20)
    images[3, 0] = 1.0  # the fourth image is red
    sprite = np.asarray(thumbnail_sprite(images))
    assert sprite.shape == (2 * SPRITE_CELL, 3 * SPRITE_CELL, 3)  # 5 images: 3 columns, 2 rows
    assert (sprite[SPRITE_CELL + 5, 5] == [255, 0, 0]).all()  # row 1, column 0
    assert (sprite[5, 5] == [0, 0, 0]).all()
