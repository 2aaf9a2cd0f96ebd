"""Hostile inputs, generated: file names, image bytes, damaged caches and command-line arguments.

Each property holds for every input hypothesis draws: the run finishes, a broken input is skipped with a reason
and a valid one is used, nothing is written outside ``--out`` and no half-written (``.*.tmp``) file is left.
The number of inputs comes from the hypothesis profile (tests/conftest.py): a class run costs what a hundred file
names do, so each property takes its own share of the profile's examples.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import pipelines.cli as cli
from concepts import load_images
from concepts.data import IMAGE_EXTENSIONS
from concepts.extract import FIT_ON, IMPORTANCE_ON, IMPORTANCES
from maco import RenderSettings
from pipelines.run.config import INVERSION_CROP_SIZE, ConceptConfig, RunConfig
from pipelines.demo import DEMO_INPUT_SIZE
from pipelines.demo.run import demo_jobs
from pipelines.io import readable
from pipelines.models import demo_model
from pipelines.run.classes import run_classes

from .pipelines.fault_runner import SMALL, snapshot


def share(fraction: float, *, at_least: int = 3) -> settings:
    """``fraction`` of the profile's examples (at least ``at_least``), so ``--hypothesis-profile=long`` scales all."""
    return settings(max_examples=max(at_least, int(settings.default.max_examples * fraction)),
                    suppress_health_check=[HealthCheck.too_slow])


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, len(mode))
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


def no_temp_files(root: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in root.rglob("*"))


# ---------------------------------------------------------------------------------------------------------------
# a. File names: any bytes a Linux file system takes (all but "/" and NUL), up to 240 of them. (".jpg" alone is a
# hidden file with no extension, as Python reads it: ignored like notes.txt, so a name has a stem.)

JPEG = encoded(noise(12, 10, 0), "JPEG")
FRAGMENTS = [b"\n", b"\r", b"\t", b" ", b"#", b"%", b"?", b"%20", b"&amp;", b"<b>", b"\\", b"..", b"~",
             "é".encode(), "日本".encode(), b"\xe9", b"\xff\xfe", b"\xed\xa0\x80", b"\x1b[31m"]
NAME_PARTS = st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(FRAGMENTS))
NAME_BYTES = st.lists(NAME_PARTS, min_size=1, max_size=40).map(
    lambda parts: b"".join(parts).replace(b"/", b"_").replace(b"\0", b"_"))
EXTENSIONS = st.sampled_from([ext.encode() for ext in IMAGE_EXTENSIONS] + [b".JPG", b".Jpeg"])


def write_named(folder: Path, name: bytes, data: bytes) -> str:
    """Write ``data`` under the file name ``name`` (raw bytes) and return its path as Python names it."""
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as handle:
        handle.write(data)
    return os.fsdecode(path)


@share(1.0)
@given(stem=NAME_BYTES, extension=EXTENSIONS)
@example(stem=b"caf\xe9 #1%20?\nnew line", extension=b".jpg")  # Latin-1, URL-special and a newline
@example(stem=b"x" * 240, extension=b".jpeg")  # the longest names: 240 bytes with the broken one's "~"
def test_any_file_name_is_used_and_written_readably(stem, extension):
    stem = stem[: 240 - len(extension) - 1]
    with tempfile.TemporaryDirectory() as tmp:
        photo = write_named(Path(tmp), stem + extension, JPEG)
        broken = write_named(Path(tmp), stem + b"~" + extension, b"not an image")
        loaded = load_images(tmp, image_size=16)
        assert loaded.paths == [photo] and [path for path, _ in loaded.skipped] == [broken]
        for text in (photo, *loaded.skipped[0]):  # the path and the reason, as pages and JSON show them
            shown = readable(text)
            assert shown.encode("utf-8") and json.loads(json.dumps(shown, ensure_ascii=False)) == shown
            assert readable(shown) == shown


# ---------------------------------------------------------------------------------------------------------------
# b. Image bytes: valid JPEG, PNG and WebP, truncated, with flipped bytes, or with a header claiming a huge size.


def png_claiming(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR says ``width`` x ``height`` (its CRC recomputed, so only the size lies)."""
    ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr[4:] + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def jpeg_claiming(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose start-of-frame says ``width`` x ``height`` (both under 2**16)."""
    sof = data.find(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def webp_claiming(data: bytes, width: int, height: int) -> bytes:
    """A lossy WebP whose VP8 frame (and VP8X canvas, when there is one) says ``width`` x ``height`` (< 2**14)."""
    if data[12:16] == b"VP8X":
        data = data[:24] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + data[30:]
    frame = data.find(b"\x9d\x01\x2a")
    return data[:frame + 3] + struct.pack("<HH", width, height) + data[frame + 7:]


CLAIMING = {"PNG": (png_claiming, 2**31 - 1), "JPEG": (jpeg_claiming, 2**16 - 1), "WEBP": (webp_claiming, 2**14 - 1)}


@st.composite
def image_files(draw) -> tuple[bytes, bool]:
    """``(bytes of a file, whether they were damaged)``."""
    fmt = draw(st.sampled_from(sorted(CLAIMING)))
    mode = draw(st.sampled_from(["RGB", "RGBA"] if fmt != "JPEG" else ["RGB", "L"]))
    image = noise(draw(st.integers(8, 40)), draw(st.integers(8, 40)), draw(st.integers(0, 99)), mode)
    data = encoded(image, fmt)
    damage = draw(st.sampled_from(["none", "truncate", "flip", "huge"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        flips = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=6))
        array = bytearray(data)
        for position, mask in flips:
            array[position] ^= mask
        data = bytes(array)
    elif damage == "huge":
        claim, most = CLAIMING[fmt]
        side = st.integers(1, most)
        data = claim(data, draw(side), draw(side))
    return data, damage != "none"


@share(1.0)
@given(files=st.lists(image_files(), min_size=1, max_size=4))
def test_any_image_bytes_are_used_or_skipped_with_a_reason(files):
    with tempfile.TemporaryDirectory() as tmp:
        for i, (data, _) in enumerate(files):
            Path(tmp, f"{i}.png").write_bytes(data)  # Pillow reads the format from the bytes, not the name
        loaded = load_images(tmp, image_size=16)
    assert len(loaded.paths) + len(loaded.skipped) == len(files)
    assert all(isinstance(reason, str) and reason for _, reason in loaded.skipped)
    images = loaded.images
    assert images.isfinite().all() and (images.numel() == 0 or 0 <= images.min() <= images.max() <= 1)
    used = {Path(p).name for p in loaded.paths}
    assert all(f"{i}.png" in used for i, (_, damaged) in enumerate(files) if not damaged)


# ---------------------------------------------------------------------------------------------------------------
# c. Damaged caches: one finished class, then any of its cache files damaged; the rerun repairs it exactly.

VIZ = RenderSettings(steps=1, image_size=32, crops=1, seed=0)
TINY = RunConfig(concepts=ConceptConfig(n_concepts=2), visualization=VIZ,
                 inversion=replace(VIZ, crop_size=INVERSION_CROP_SIZE), inversions=1, load_workers=0,
                 image_size=DEMO_INPUT_SIZE, **SMALL)


@pytest.fixture(scope="module")
def finished_class(tmp_path_factory):
    """A finished one-class run (no gallery), its job and its files."""
    root = tmp_path_factory.mktemp("cache")
    job = demo_jobs(root / "images", n_per_class=4)[0]
    run_classes([job], demo_model(), TINY, root / "clean", progress=False, gallery=False)
    folder = root / "clean" / "classes" / "0000"
    caches = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                    and (p.name == "class.json" or p.relative_to(folder).parts[0] in ("bank", "features", "renders")))
    return job, root / "clean", caches


@st.composite
def damages(draw, size: int, kinds: tuple[str, ...]) -> bytes | tuple[int, int]:
    kind = draw(st.sampled_from(kinds))
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2 * size))
    if kind == "truncate":
        return (draw(st.integers(0, size - 1)), 0)
    return (draw(st.integers(0, size - 1)), draw(st.integers(1, 255)))


def damage(path: Path, how: bytes | tuple[int, int]) -> None:
    """Replace ``path`` by ``how`` (bytes), or cut it at ``how[0]`` (mask 0), or xor that byte with ``how[1]``."""
    if isinstance(how, bytes):
        path.write_bytes(how)
        return
    data = bytearray(path.read_bytes())
    position, mask = how
    path.write_bytes(bytes(data[:position]) if mask == 0 else bytes(data[:position] + bytes([data[position] ^ mask])
                                                                   + data[position + 1:]))


@share(0.1, at_least=5)
@given(data=st.data())
def test_a_damaged_cache_file_is_redone_to_the_same_outputs(finished_class, data):
    job, clean, caches = finished_class
    name = data.draw(st.sampled_from(caches), label="file")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        shutil.copytree(clean, out)
        folder = out / "classes" / "0000"
        if name != "class.json":  # an unfinished class: its caches are read back, the damaged one must be redone
            (folder / "class.json").unlink()
        kinds = ("empty", "truncate", "random", "flip")
        damage(folder / name, data.draw(damages((folder / name).stat().st_size, kinds), label="damage"))
        check_repaired(job, out, clean, name)


def check_repaired(job, out: Path, clean: Path, name: str) -> None:
    """A rerun in ``out`` finishes the class and ends with the files of ``clean``, nothing else."""
    summary = run_classes([job], demo_model(), TINY, out, progress=False, gallery=False)
    assert not summary.failed and summary.done + summary.skipped == [0]
    folder = out / "classes" / "0000"
    assert snapshot(folder) == snapshot(clean / "classes" / "0000"), f"{name} was not repaired"
    assert no_temp_files(out) and sorted(p.name for p in out.parent.iterdir()) == ["run"]


def test_a_class_record_with_a_flipped_byte_is_redone(finished_class, tmp_path):
    """Found by the fuzzer: one bit of a key ("cluster_sprite" -> "bluster_sprite") keeps the class "finished"."""
    job, clean, _ = finished_class
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    record = out / "classes" / "0000" / "class.json"
    record.write_bytes(record.read_bytes().replace(b'"cluster_sprite"', b'"bluster_sprite"'))
    check_repaired(job, out, clean, "class.json")


# ---------------------------------------------------------------------------------------------------------------
# d. Command-line arguments: one bad value among good ones gets exit code 2 and a line naming its flag.

NOT_INT = st.text(max_size=12).filter(lambda t: not is_number(t, int))
IN_RANGE = {"positive": 1, "non_negative": 0}
ODD_PATHS = ["", " ", "\n", "missing", "a/b/c", "caf\udce9", "-x", "afile", "afile/sub"]  # a file named afile


def is_number(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


@st.composite
def bad_arguments(draw) -> tuple[str, list[str]]:
    """``(flag, its values)``: values the flag must refuse."""
    kind = draw(st.sampled_from(["positive", "non_negative", "even", "seed", "choice", "floats", "device", "path"]))
    if kind in IN_RANGE:
        flag = draw(st.sampled_from(["--k", "--steps", "--crops", "--patch-size", "--max-images"] if kind == "positive"
                                    else ["--inversions", "--workers"]))
        return flag, [draw(st.one_of(NOT_INT, st.integers(max_value=IN_RANGE[kind] - 1).map(str)))]
    if kind == "even":
        odd = st.integers(0, 10**6).map(lambda n: str(2 * n + 1))
        return "--image-size", [draw(st.one_of(NOT_INT, st.integers(max_value=0).map(str), odd))]
    if kind == "seed":
        return "--seed", [draw(NOT_INT)]
    if kind == "choice":
        flag, choices = draw(st.sampled_from([("--importance", IMPORTANCES), ("--importance-on", IMPORTANCE_ON),
                                              ("--fit-on", FIT_ON)]))
        return flag, [draw(st.text(max_size=12).filter(lambda t: t not in choices))]
    if kind == "floats":
        values = draw(st.lists(st.floats(0.01, 1).map(str), min_size=3, max_size=3))
        values[draw(st.integers(0, 2))] = draw(st.text(max_size=8).filter(lambda t: not is_number(t, float)))
        return draw(st.sampled_from(["--mean", "--std"])), values
    if kind == "device":
        return "--device", [draw(st.sampled_from(["", "gpu", "cuda:99", "cpu:x", "tpu", "cuda:-1"]))]
    flag = draw(st.sampled_from(["--images", "--weights", "--class-names", "--class-index", "--out"]))
    return flag, [draw(st.sampled_from(["afile", "afile/sub"] if flag == "--out" else ODD_PATHS))]


@pytest.fixture(scope="module")
def sandbox_images(tmp_path_factory) -> Path:
    return demo_jobs(tmp_path_factory.mktemp("cli") / "images", n_per_class=2)[0].folder


@share(1.0)
@given(bad=bad_arguments(), joined=st.booleans())
@example(bad=("--out", [""]), joined=False)  # found by the fuzzer: argparse's type=Path read "" as "."
def test_a_bad_argument_is_refused_naming_it_and_writes_nothing_outside_out(sandbox_images, bad, joined):
    flag, values = bad
    good = {"--images": str(sandbox_images), "--class-index": "1", "--out": "out"}
    argv = ["run", *(part for key, value in good.items() if key != flag for part in (key, value))]
    argv += [f"{flag}={values[0]}"] if joined and len(values) == 1 else [flag, *values]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "afile").write_text("a file, not a folder")
        before = sorted(Path(tmp).rglob("*"))
        cwd, stderr = os.getcwd(), io.StringIO()
        os.chdir(tmp)
        try:
            with mock.patch.object(cli, "_model", side_effect=AssertionError("weights were loaded")), \
                    contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
                cli.main(argv)
        finally:
            os.chdir(cwd)
        err = stderr.getvalue()
        assert exit_info.value.code == 2 and "Traceback" not in err, err
        assert flag in err, err
        out = Path(tmp) / "out"
        assert [p for p in sorted(Path(tmp).rglob("*")) if out not in (p, *p.parents)] == before
        assert no_temp_files(Path(tmp))
