"""Image loading stays bounded in memory and reports every folder entry it cannot use."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import concepts.data
from concepts import load_images


def smooth_image(height: int, width: int) -> np.ndarray:
    """A photo-like image (smooth gradients), where resampling differences are small."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [0.5 + 0.4 * np.sin(3 * x + 2 * y), x, 0.5 + 0.4 * np.cos(4 * y)]
    return (np.stack(channels, axis=-1) * 255).astype(np.uint8)


@pytest.fixture
def interpolate_calls(monkeypatch):
    """Shapes ``(input, output)`` of every resize done by concepts.data."""
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    original = F.interpolate

    def recording(x, *args, **kwargs):
        out = original(x, *args, **kwargs)
        calls.append((tuple(x.shape), tuple(out.shape)))
        return out

    monkeypatch.setattr(concepts.data.F, "interpolate", recording)
    return calls


def test_thin_images_never_make_a_tensor_larger_than_the_square(tmp_path, interpolate_calls):
    for height, width in [(1, 12000), (12000, 1), (2, 9000), (12, 3000), (3000, 12)]:
        Image.fromarray(smooth_image(height, width)).save(tmp_path / f"{height}x{width}.png")
    loaded = load_images(tmp_path, image_size=16)
    assert sorted(os.path.basename(p) for p in loaded.paths) == ["12x3000.png", "3000x12.png"]
    assert loaded.images.shape == (2, 3, 16, 16)
    reasons = {os.path.basename(p): r for p, r in loaded.skipped}
    assert sorted(reasons) == ["12000x1.png", "1x12000.png", "2x9000.png"]
    assert reasons["1x12000.png"] == "image is 12000 x 1 px: its short side is under 8 px, too thin to crop a square"
    assert interpolate_calls and all(out == (1, 3, 16, 16) and inp == (1, 3, 12, 12) for inp, out in interpolate_calls)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_large_images_are_reduced_before_the_resize(tmp_path, interpolate_calls, suffix):
    pixels = smooth_image(500, 600)
    Image.fromarray(pixels).save(tmp_path / f"big{suffix}", quality=95)
    x = load_images(tmp_path, image_size=16).images
    assert x.shape == (1, 3, 16, 16)
    (inp, _), = interpolate_calls
    assert inp[2] == inp[3] <= 4 * 16  # a decoding scale near the output, not the 500 x 500 square
    square = torch.from_numpy(pixels[:, 50:550].copy()).permute(2, 0, 1).float().div(255)
    reference = F.interpolate(square[None], size=(16, 16), mode="bilinear", antialias=True, align_corners=False)[0]
    assert float((x[0] - reference).abs().mean()) < 0.01


def test_ordinary_images_match_a_resize_then_crop(tmp_path):
    pixels = smooth_image(200, 300)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    x = load_images(tmp_path, image_size=64).images[0]
    full = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
    resized = F.interpolate(full[None], size=(64, 96), mode="bilinear", antialias=True, align_corners=False)[0]
    torch.testing.assert_close(x, resized[:, :, 16:80], atol=0.02, rtol=0)


def test_images_over_the_decompression_bomb_limit_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(smooth_image(20, 20)).save(tmp_path / "a_small.png")
    Image.fromarray(smooth_image(30, 40)).save(tmp_path / "b_over.png")  # over the limit: Pillow only warns
    Image.fromarray(smooth_image(60, 60)).save(tmp_path / "c_bomb.png")  # over twice the limit: Pillow raises
    loaded = load_images(tmp_path, image_size=8)
    assert [os.path.basename(p) for p in loaded.paths] == ["a_small.png"]
    reasons = {os.path.basename(p): r for p, r in loaded.skipped}
    assert "over Pillow's decompression-bomb limit of 1000 pixels" in reasons["b_over.png"]
    assert reasons["c_bomb.png"].startswith("DecompressionBombError: ")


def test_folder_entries_that_are_not_images_are_listed_not_dropped(tmp_path):
    Image.fromarray(smooth_image(20, 20)).save(tmp_path / "good.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "ping").symlink_to(tmp_path / "pong")
    (tmp_path / "pong").symlink_to(tmp_path / "ping")
    (tmp_path / "notes.txt").write_text("a regular file with another extension: ignored, not reported")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.jpg")  # opening it would block forever
    loaded = load_images(tmp_path, image_size=8, num_workers=1)
    assert [os.path.basename(p) for p in loaded.paths] == ["good.png"]
    reasons = {os.path.basename(p): r for p, r in loaded.skipped}
    assert reasons.pop("sub") == "a folder, not an image (folders are not searched)"
    assert reasons.pop("gone.jpg").startswith("broken symbolic link")
    assert reasons.pop("loop.jpg") == reasons.pop("ping") == reasons.pop("pong") == "symbolic link loop"
    if hasattr(os, "mkfifo"):
        assert reasons.pop("pipe.jpg").startswith("not a regular file")
    assert reasons == {}
    given = load_images([tmp_path / "sub", tmp_path / "gone.jpg", tmp_path / "good.png"], image_size=8)
    assert len(given) == 1 and [r.split(" ")[0] for _, r in given.skipped] == ["broken", "a"]
