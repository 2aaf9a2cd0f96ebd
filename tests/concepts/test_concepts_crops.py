"""Patch grid: CRAFT geometry, boxes, lazy batches."""
from __future__ import annotations

import pytest
import torch

from concepts import extract_crops, grid_boxes


def test_craft_grid_224_p64_has_16_crops_stride_51():
    boxes = grid_boxes(224, 224, 64, int(0.8 * 64))
    assert len(boxes) == 16
    assert boxes[:, 0].unique().tolist() == [0, 51, 102, 153]
    assert bool(((boxes[:, 2] - boxes[:, 0]) == 64).all())


def test_extract_crops_boxes_index_and_batch():
    images = torch.rand(3, 3, 40, 40)
    crops = extract_crops(images, patch_size=20, out_size=10)
    assert len(crops) == 3 * 4 and crops.image_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert crops.boxes.dtype == torch.long and crops.boxes.shape == (12, 4)
    x0, y0, x1, y1 = crops.boxes[5].tolist()
    torch.testing.assert_close(crops.crop(5), images[1, :, y0:y1, x0:x1])
    batch = crops.batch(2, 7)
    assert batch.shape == (5, 3, 10, 10)
    assert crops.batch(10, 99).shape == (2, 3, 10, 10)


def test_extract_crops_errors():
    with pytest.raises(ValueError, match="`patch_size` of `extract_crops` must be an int in \\[1, 16\\]"):
        extract_crops(torch.rand(1, 3, 16, 16), patch_size=32)
    with pytest.raises(ValueError, match="`images` of `extract_crops`"):
        extract_crops(torch.rand(3, 16, 16))
