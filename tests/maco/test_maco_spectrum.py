import logging

import numpy as np
import pytest
import torch
from PIL import Image

from maco import compute_spectrum, default_spectrum, load_spectrum, resize_spectrum, save_spectrum


def write_images(folder, n=3):
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")


def test_compute_spectrum_shape_symmetry_and_skips_broken_files(tmp_path):
    write_images(tmp_path)
    spectrum = compute_spectrum(tmp_path, size=32)
    assert spectrum.shape == (3, 32, 17)
    neg = (-torch.arange(32)) % 32
    for col in (0, 16):
        torch.testing.assert_close(spectrum[:, :, col], spectrum[:, neg, col])


def test_compute_spectrum_needs_an_image(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match=f"none of 1 files in the folder {tmp_path} could be used.*a.jpg"):
        compute_spectrum(tmp_path, size=16)


def test_compute_spectrum_skips_bombs_thin_images_links_and_folders_with_one_warning(tmp_path, monkeypatch, caplog):
    write_images(tmp_path)  # three 40 x 50 images and broken.jpg
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2500)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (60, 50, 3), dtype=np.uint8)).save(tmp_path / "over.png")  # Pillow warns
    Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(tmp_path / "bomb.png")  # Pillow raises
    Image.fromarray(rng.integers(0, 255, (1, 2000, 3), dtype=np.uint8)).save(tmp_path / "thin.png")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "sub.jpg").mkdir()
    (tmp_path / "notes.txt").write_text("not an image extension: ignored")
    skipped: list[tuple[str, str]] = []
    with caplog.at_level(logging.WARNING, logger="maco.spectrum"):
        spectrum = compute_spectrum(tmp_path, size=32, skipped=skipped)
    torch.testing.assert_close(spectrum, compute_spectrum([tmp_path / f"{i}.png" for i in range(3)], size=32))
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in skipped}
    assert sorted(reasons) == ["bomb.png", "broken.jpg", "gone.jpg", "loop.png", "over.png", "sub.jpg", "thin.png"]
    assert reasons["bomb.png"].startswith("DecompressionBombError")
    assert "decompression-bomb limit of 2500 pixels" in reasons["over.png"]
    assert "short side is under 8 px" in reasons["thin.png"]
    assert reasons["gone.jpg"] == "broken symbolic link" and reasons["loop.png"] == "symbolic link loop"
    assert reasons["sub.jpg"].startswith("a folder")
    (record,) = caplog.records
    assert "skipped 7 of 10 files" in record.getMessage() and "thin.png (image is 2000 x 1 px" in record.getMessage()


def test_save_load_round_trip_up_to_scale(tmp_path):
    spectrum = default_spectrum(64)
    save_spectrum(spectrum, tmp_path / "s.npy")
    loaded = load_spectrum(tmp_path / "s.npy")
    ratio = loaded / spectrum
    assert (ratio - ratio.median()).abs().max() / ratio.median() < 2e-3  # float16
    assert not list(tmp_path.glob("*.tmp"))


def test_default_spectrum_is_packaged_and_resizes():
    assert default_spectrum().shape == (3, 512, 257)
    small = resize_spectrum(default_spectrum(), 128)
    assert small.shape == (3, 128, 65) and torch.isfinite(small).all() and (small >= 0).all()
    assert small[:, 0, 0].min() > small[:, 64, 64].max()  # low frequencies dominate


def test_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="even"):
        resize_spectrum(default_spectrum(), 127)
