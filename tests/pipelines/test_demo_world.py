"""pipelines.demo world: determinism, shapes, masks that match the drawn parts, parts apart, class folders."""
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.demo import CLASS_NAMES, CLASS_PARTS, PART_COLOURS, PART_NAMES, DemoWorld
from pipelines.demo.parts import COLOUR_JITTER, DISTINCTIVE_PARTS, SHARED_PARTS


@pytest.fixture(scope="module")
def world():
    return DemoWorld(image_size=128)


def test_demo_sample_shapes_and_dtypes(world):
    images, masks = world.sample(0, 3, seed=5)
    assert images.shape == (3, 128, 128, 3) and images.dtype == np.uint8
    assert masks.shape == (3, len(PART_NAMES), 128, 128) and masks.dtype == bool


def test_demo_sample_is_deterministic(world):
    a, ma = world.sample(2, 4, seed=7)
    b, mb = DemoWorld(image_size=128).sample(2, 4, seed=7)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    c, _ = world.sample(2, 4, seed=8)
    assert not np.array_equal(a, c)
    prefix, _ = world.sample(2, 2, seed=7)
    assert np.array_equal(prefix, a[:2])
    assert all(not np.array_equal(a[i], a[j]) for i in range(4) for j in range(i))


def test_demo_world_seed_is_the_default(world):
    a, _ = DemoWorld(seed=3).sample(1, 2)
    b, _ = world.sample(1, 2, seed=3)
    assert np.array_equal(a, b)


def test_demo_parts_are_shared_or_distinctive():
    assert set(SHARED_PARTS) == {"post", "bricks"}
    for name in CLASS_NAMES:
        assert len(DISTINCTIVE_PARTS[name]) == 2, name
        others = {p for other in CLASS_NAMES if other != name for p in CLASS_PARTS[other]}
        assert not set(DISTINCTIVE_PARTS[name]) & others
        assert set(CLASS_PARTS[name]) == set(DISTINCTIVE_PARTS[name]) | (set(CLASS_PARTS[name]) & set(SHARED_PARTS))
    assert len(set(PART_NAMES)) == len(PART_NAMES) == len(PART_COLOURS)


@pytest.mark.parametrize("class_index", range(len(CLASS_NAMES)))
def test_demo_masks_match_drawn_parts(world, class_index):
    images, masks = world.sample(class_index, 8, seed=11)
    name = CLASS_NAMES[class_index]
    present = CLASS_PARTS[name]
    assert masks.sum(axis=1).max() <= 1  # parts are disjoint
    distinctive = [PART_NAMES.index(p) for p in DISTINCTIVE_PARTS[name]]
    assert masks[:, distinctive].any(axis=(2, 3)).any(axis=1).all()  # every image shows a distinctive part
    for p, part in enumerate(PART_NAMES):
        if part not in present:
            assert not masks[:, p].any()
            continue
        palette = np.array(PART_COLOURS[part], dtype=np.int64)
        for image, mask in zip(images, masks[:, p]):
            if not mask.any():  # left out of this image
                continue
            assert mask.sum() >= 30, f"{part} mask nearly empty"
            pixels = image[mask].astype(np.int64)  # (m, 3)
            # one colour offset per part instance, within +-COLOUR_JITTER of a palette colour
            distance = np.abs(pixels[:, None, :] - palette[None]).max(-1).min(-1)
            assert distance.max() <= COLOUR_JITTER
            # a localised part: its box is at most ~3/4 of the image side
            ys, xs = np.nonzero(mask)
            assert ys.max() - ys.min() < 100 and xs.max() - xs.min() < 100


def _box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("class_index", range(len(CLASS_NAMES)))
def test_demo_distinctive_parts_appear_apart(world, class_index):
    """In 40 images each distinctive part is shown without the other, both are shown together, and some
    images have them apart: their boxes do not touch."""
    name = CLASS_NAMES[class_index]
    _, masks = world.sample(class_index, 40, seed=2026)
    a, b = (PART_NAMES.index(p) for p in DISTINCTIVE_PARTS[name])
    has_a, has_b = masks[:, a].any(axis=(1, 2)), masks[:, b].any(axis=(1, 2))
    assert (has_a & ~has_b).sum() >= 4 and (has_b & ~has_a).sum() >= 4 and (has_a & has_b).sum() >= 8
    apart = 0
    for i in np.flatnonzero(has_a & has_b):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _box(masks[i, a]), _box(masks[i, b])
        apart += ax1 < bx0 or bx1 < ax0 or ay1 < by0 or by1 < ay0
    assert apart >= 2


def test_demo_masks_follow_image_size():
    images, masks = DemoWorld(image_size=64).sample(5, 4, seed=1)
    assert images.shape == (4, 64, 64, 3) and masks.shape == (4, len(PART_NAMES), 64, 64)
    tree = [PART_NAMES.index("crown"), PART_NAMES.index("trunk")]
    assert masks[:, tree].any(axis=(2, 3)).any(axis=1).all()


def test_demo_dataset(world):
    images, labels, masks = world.dataset(2, seed=4)
    n = 2 * len(CLASS_NAMES)
    assert images.shape == (n, 3, 128, 128) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.dtype == torch.int64 and labels.tolist() == [c for c in range(len(CLASS_NAMES)) for _ in range(2)]
    assert masks.shape == (n, len(PART_NAMES), 128, 128) and masks.dtype == torch.bool
    first, _ = world.sample(0, 2, seed=4)
    assert torch.equal(images[:2], torch.from_numpy(first).permute(0, 3, 1, 2).float() / 255)


def test_demo_write_class_folders(tmp_path):
    world = DemoWorld(image_size=64)
    paths = world.write_class_folders(tmp_path / "imgs", 2, seed=9)
    assert len(paths) == 2 * len(CLASS_NAMES)
    assert paths[0] == tmp_path / "imgs" / "000_lamp" / "0000.png"
    assert paths[-1] == tmp_path / "imgs" / f"{len(CLASS_NAMES) - 1:03d}_{CLASS_NAMES[-1]}" / "0001.png"
    expected, _ = world.sample(0, 2, seed=9)
    with Image.open(paths[1]) as image:
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected[1])
    before = [p.read_bytes() for p in paths]
    again = world.write_class_folders(tmp_path / "imgs", 2, seed=9)
    assert again == paths and [p.read_bytes() for p in again] == before
    assert not list((tmp_path / "imgs").rglob("*.tmp"))


@pytest.mark.parametrize("call", [
    lambda w: w.sample(len(CLASS_NAMES), 1, seed=0),
    lambda w: w.sample(-1, 1, seed=0),
    lambda w: w.sample(0, 0, seed=0),
    lambda w: w.sample(0, 1, seed=-1),
    lambda w: w.dataset(1.5, seed=0),
    lambda w: DemoWorld(image_size=8),
])
def test_demo_world_rejects_bad_arguments(world, call):
    with pytest.raises(ValueError):
        call(world)
