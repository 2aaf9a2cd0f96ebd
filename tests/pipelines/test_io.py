"""pipelines.io: atomic writes, writers by extension, clear errors."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import io as pio


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_text_creates_parents_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "note.txt"
    assert pio.atomic_write_text(target, "héllo") == target
    assert target.read_text(encoding="utf-8") == "héllo"
    assert _leftovers(target.parent) == []


def test_atomic_write_bytes_replaces_existing(tmp_path):
    target = tmp_path / "blob.bin"
    pio.atomic_write_bytes(target, b"old")
    pio.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "page.html"
    pio.save("<p>old</p>", target)

    def boom(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pio.os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        pio.save("<p>new</p>", target)
    assert target.read_text() == "<p>old</p>"
    assert _leftovers(tmp_path) == []


def test_writer_raising_midway_keeps_old_content(tmp_path):
    target = tmp_path / "data.json"
    pio.save({"a": 1}, target)
    with pytest.raises(ValueError, match="NaN"):
        pio.save({"a": math.nan}, target)
    assert pio.load_json(target) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_json_sorted_indented_and_numpy_values(tmp_path):
    target = tmp_path / "x.json"
    pio.save({"b": np.float32(1.5), "a": np.arange(3), "c": Path("p/q")}, target)
    text = target.read_text()
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')
    assert "\n  " in text
    assert pio.load_json(target) == {"a": [0, 1, 2], "b": 1.5, "c": "p/q"}


def test_json_refuses_numpy_nan(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        pio.save({"x": np.float64("nan")}, tmp_path / "x.json")


def test_unknown_extension_lists_supported(tmp_path):
    with pytest.raises(ValueError) as info:
        pio.save({"a": 1}, tmp_path / "x.pkl")
    message = str(info.value)
    assert "'.pkl'" in message
    for ext in (".json", ".png", ".npz", ".html", ".txt", ".css", ".js"):
        assert ext in message
    assert not (tmp_path / "x.pkl").exists()


def test_parent_is_a_file_gives_clear_error(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("I am a file")
    with pytest.raises(pio.OutputNotWritableError, match="not writable.*--out") as info:
        pio.save("x", blocker / "sub" / "page.html")
    assert str(blocker) in str(info.value)
    assert isinstance(info.value, PermissionError)


def test_permission_denied_gives_clear_error(tmp_path, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pio.tempfile, "mkstemp", denied)
    with pytest.raises(pio.OutputNotWritableError, match="readonly.*not writable"):
        pio.atomic_write_text(out / "a.txt", "x")


@pytest.mark.parametrize("channels", [3, 4])
def test_png_roundtrip_tensor(tmp_path, channels):
    generator = torch.Generator().manual_seed(0)
    tensor = torch.rand(channels, 9, 7, generator=generator)
    pio.save(tensor, tmp_path / "t.png")
    back = np.asarray(Image.open(tmp_path / "t.png"))
    assert back.shape == (9, 7, channels)
    expected = np.round(tensor.permute(1, 2, 0).numpy() * 255)
    assert np.abs(back.astype(float) - expected).max() <= 1


def test_png_roundtrip_uint8_and_float_arrays(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    pio.save(array, tmp_path / "u.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "u.png")), array)
    floats = rng.uniform(-0.5, 1.5, (5, 6, 4))
    pio.save(floats, tmp_path / "f.png")
    back = np.asarray(Image.open(tmp_path / "f.png"))
    assert back.shape == (5, 6, 4)
    assert np.array_equal(back, np.round(np.clip(floats, 0, 1) * 255).astype(np.uint8))


def test_png_from_pil_image(tmp_path):
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    pio.save(image, tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), torch.zeros(1, 3, 4, 4), np.zeros((4, 4, 2))])
def test_png_bad_shape_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="shape"):
        pio.save(bad, tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


def test_npz_roundtrip_and_no_pickle(tmp_path):
    data = {"W": np.arange(6.0).reshape(2, 3), "U": torch.ones(2, 2)}
    pio.save(data, tmp_path / "bank.npz")
    with np.load(tmp_path / "bank.npz", allow_pickle=False) as loaded:
        assert np.array_equal(loaded["W"], data["W"])
        assert np.array_equal(loaded["U"], np.ones((2, 2)))
    with pytest.raises(TypeError, match="pickle"):
        pio.save({"x": np.array([{"a": 1}], dtype=object)}, tmp_path / "o.npz")


def test_text_writers_require_str(tmp_path):
    with pytest.raises(TypeError, match="str"):
        pio.save(b"bytes", tmp_path / "a.css")
    for ext in (".html", ".txt", ".css", ".js"):
        pio.save("body{}", tmp_path / f"a{ext}")
        assert (tmp_path / f"a{ext}").read_text() == "body{}"


def test_to_pil_quantises_every_input_the_same_way():
    floats = np.array([[[0.0, 0.5, 1.0], [-1.0, 2.0, np.nan]]], dtype=np.float32)  # (1, 2, 3)
    expected = np.array([[[0, 128, 255], [0, 255, 0]]], dtype=np.uint8)  # clipped, rounded, NaN as 0
    assert np.array_equal(np.asarray(pio.to_pil(floats)), expected)
    tensor = torch.from_numpy(floats).permute(2, 0, 1).half()
    assert np.array_equal(np.asarray(pio.to_pil(tensor)), expected)
    assert np.array_equal(np.asarray(pio.to_pil(expected)), expected)  # uint8 is kept, not scaled again
    image = Image.new("RGBA", (3, 2))
    assert pio.to_pil(image) is image
    assert pio.to_pil(torch.rand(4, 5, 7)).mode == "RGBA"
    assert pio.to_pil(torch.rand(3, 5, 7), size=16).size == (16, 16)


def test_to_pil_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`image` of to_pil as a tensor .*\(3\|4, H, W\).*image\[0\]"):
        pio.to_pil(torch.zeros(1, 3, 4, 4))
    with pytest.raises(TypeError, match="`image` of to_pil as an array must be uint8 or float.*int64"):
        pio.to_pil(np.zeros((4, 4, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="`image` of to_pil must be a PIL Image.*got list"):
        pio.to_pil([[0.0]])


def test_load_json_reads_save_output(tmp_path):
    payload = {"z": [1, 2], "a": {"b": None}}
    pio.save(payload, tmp_path / "r.json")
    assert pio.load_json(tmp_path / "r.json") == payload
    assert json.loads((tmp_path / "r.json").read_text()) == payload



@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions; "
                    "covered by the file-as-parent and monkeypatched tests")
def test_real_read_only_folder(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(pio.OutputNotWritableError, match="locked.*not writable"):
            pio.save("x", out / "sub" / "page.html")
        with pytest.raises(pio.OutputNotWritableError, match="locked.*--out"):
            pio.save("x", out / "page.html")
    finally:
        out.chmod(0o755)
