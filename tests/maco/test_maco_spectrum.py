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
    with pytest.raises(ValueError, match="none of 1 files"):
        compute_spectrum(tmp_path, size=16)


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
