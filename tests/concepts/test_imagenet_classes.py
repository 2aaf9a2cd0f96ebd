"""ImageNet classes keep their standard ILSVRC-2012 index on a subset of ImageNet."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from concepts import imagenet_class_folders, imagenet_classes, imagenet_root_folders, load_images


@pytest.fixture
def subset_root(tmp_path):
    """A root with two of the 1000 classes, a couple of tiny PNGs each, and a hidden folder."""
    rng = np.random.default_rng(0)
    for wnid in ("n01440764", "n02102040"):
        (tmp_path / wnid).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / wnid / f"{i}.png")
    (tmp_path / ".cache").mkdir()  # hidden: ignored
    (tmp_path / "LOC_synset_mapping.txt").write_text("files beside the class folders are ignored")
    return tmp_path


def test_packaged_table_is_the_ilsvrc_2012_one():
    table = imagenet_classes()
    assert len(table.wnids) == len(table.names) == len(table.index_of) == 1000
    assert (table.wnids[0], table.names[0]) == ("n01440764", "tench")
    assert (table.wnids[217], table.names[217]) == ("n02102040", "English springer")
    assert table.index_of["n15075141"] == 999
    assert imagenet_classes() is table  # read once
    with pytest.raises(TypeError):
        table.index_of["n00000000"] = 1  # read-only


def test_subset_root_keeps_standard_indices(subset_root):
    assert imagenet_root_folders(subset_root) == {0: "n01440764", 217: "n02102040"}
    expected = (217, "n02102040", subset_root / "n02102040")
    for cls in ("n02102040", 217, "217", "English springer", "english springer"):
        assert imagenet_class_folders(subset_root, [cls])[0] == expected
    index, _, folder = imagenet_class_folders(subset_root, ["n02102040"])[0]
    assert imagenet_classes().names[index] == "English springer"
    assert len(load_images(folder, image_size=8)) == 2


@pytest.mark.parametrize("cls", [1, "goldfish", "n01443537"])
def test_class_absent_from_the_root_is_a_clear_error(subset_root, cls):
    with pytest.raises(ValueError, match=r"class 1 \(goldfish\), whose folder n01443537/ is not in .*2 class folders"):
        imagenet_class_folders(subset_root, [cls])[0]


def test_stray_folder_means_not_an_imagenet_root(subset_root):
    (subset_root / "misc").mkdir()
    with pytest.raises(ValueError, match=r"must hold only ILSVRC-2012 wnid folders .*but misc/ is not one"):
        imagenet_class_folders(subset_root, ["n02102040"])[0]


def test_root_errors(tmp_path):
    with pytest.raises(ValueError, match="must be an existing folder of ILSVRC-2012 wnid folders"):
        imagenet_root_folders(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no class folders"):
        imagenet_class_folders(tmp_path, [0])[0]
