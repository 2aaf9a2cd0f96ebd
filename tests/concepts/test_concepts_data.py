"""Image loading (corrupt files, modes, EXIF, order) and class resolution."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from concepts import imagenet_class_folders, imagenet_classes, load_images, resolve_class


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a_good.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "b_good.png")
    (tmp_path / "c_garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    data = (tmp_path / "a_good.jpg").read_bytes()
    (tmp_path / "d_truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "e_cmyk.jpg")
    Image.fromarray(rng.integers(0, 65536, (30, 30), dtype=np.uint16)).save(tmp_path / "f_16bit.png")
    rgba = np.concatenate([rgb, np.zeros((40, 60, 1), np.uint8)], axis=2)  # fully transparent -> white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "g_rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "h_gray.png")
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    return tmp_path


def test_load_images_skips_corrupt_and_converts_modes(image_folder):
    loaded = load_images(image_folder, image_size=24)
    names = [p.split("/")[-1] for p in loaded.paths]
    assert names == ["a_good.jpg", "b_good.png", "e_cmyk.jpg", "f_16bit.png", "g_rgba.png", "h_gray.png"]
    assert sorted(p.split("/")[-1] for p, _ in loaded.skipped) == ["c_garbage.jpg", "d_truncated.jpg"]
    assert all(reason for _, reason in loaded.skipped)
    x = loaded.images
    assert x.shape == (6, 3, 24, 24) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    torch.testing.assert_close(x[4], torch.ones(3, 24, 24))  # transparent RGBA composited on white
    assert torch.equal(x[5][0], x[5][1])  # grayscale -> equal channels
    assert float(x[3].std()) > 0.05  # 16-bit decoded, not a flat image


def test_load_images_max_images_order_and_workers(image_folder):
    first = load_images(image_folder, image_size=16, max_images=2)
    assert [p.split("/")[-1] for p in first.paths] == ["a_good.jpg", "b_good.png"]
    again = load_images(sorted(image_folder.glob("*.*"))[::-1], image_size=16, num_workers=1)
    assert [p.split("/")[-1] for p in again.paths][:2] == ["a_good.jpg", "b_good.png"]
    assert len(again.skipped) == 3  # the list is taken as given: notes.txt is tried too


def test_load_images_exif_orientation(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    loaded = load_images(tmp_path, image_size=20).images
    assert loaded.shape == (1, 3, 20, 20)
    x = loaded[0]  # displayed 40 tall x 20 wide, white on top; the center crop keeps the middle rows
    assert float(x[:, :5].mean()) > 0.8 and float(x[:, -5:].mean()) < 0.2


def test_load_images_errors(tmp_path):
    with pytest.raises(ValueError, match="`paths_or_folder` of `load_images` must be an existing"):
        load_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="`image_size` of `load_images`"):
        load_images(tmp_path, image_size=0)


CATS = ["tench", "goldfish", "crane", "crane", "great white shark"]


def test_resolve_class_by_index_name_and_errors():
    assert resolve_class(1, CATS) == 1
    assert resolve_class("1", CATS) == 1
    assert resolve_class("Goldfish", CATS) == 1
    with pytest.raises(ValueError, match="ambiguous.*2 \\(crane\\), 3 \\(crane\\)"):
        resolve_class("crane", CATS)
    with pytest.raises(ValueError, match="Close matches: 'goldfish' \\(1\\)"):
        resolve_class("goldfsh", CATS)
    with pytest.raises(ValueError, match="class index in \\[0, 4\\]"):
        resolve_class(7, CATS)
    with pytest.raises(ValueError, match="`--class-index` must be a class index"):
        resolve_class(-1, CATS, argument="`--class-index`")
    with pytest.raises(TypeError, match="must be an int or a str; got float"):
        resolve_class(1.0, CATS)


def test_resolve_class_exact_case_wins_then_a_unique_case_insensitive_match():
    names = imagenet_classes().names  # 'Cardigan' (264) is the corgi, 'cardigan' (474) the sweater
    assert resolve_class("Cardigan", names) == 264
    assert resolve_class("cardigan", names) == 474
    assert resolve_class(" english SPRINGER ", names) == 217
    with pytest.raises(ValueError, match=r"ambiguous: 'CARDIGAN' names classes 264 \(Cardigan\), 474 \(cardigan\)"):
        resolve_class("CARDIGAN", names)


def test_resolve_class_reads_wnids():
    table = imagenet_classes()
    assert resolve_class("n02102040", table.names, table.wnids) == 217
    with pytest.raises(ValueError, match="or a WordNet id; got 'n02102041'.*Close matches: 'n02102040' \\(217\\)"):
        resolve_class("n02102041", table.names, table.wnids)


def test_imagenet_class_folders_names_every_missing_class(tmp_path):
    (tmp_path / "n01440764").mkdir()
    assert imagenet_class_folders(tmp_path, ["tench", 0]) == [(0, "n01440764", tmp_path / "n01440764")] * 2
    with pytest.raises(ValueError, match=r"`c` asks for class 1 \(goldfish\), whose folder n01443537/; "
                                         r"class 2 \(great white shark\), whose folder n01484850/ are not in `r`"):
        imagenet_class_folders(tmp_path, [0, 1, 2, 1], root_argument="`r`", classes_argument="`c`")
