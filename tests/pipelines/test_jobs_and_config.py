import inspect
from dataclasses import fields

import pytest
import torch
import torchvision
from PIL import Image

from maco import RenderSettings
from pipelines.run.config import ConceptConfig, RunConfig
from pipelines.run.jobs import class_folders, folder_jobs, imagenet_jobs, parse_class_list
from pipelines.models import imagenet_resnet50

CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"]


def test_a_run_config_renders_with_maco_settings_round_trip():
    config = RunConfig()
    assert isinstance(config.visualization, RenderSettings) and config.visualization.seed == 0
    recorded = config.to_dict()["visualization"]
    assert RenderSettings.from_dict(recorded) == config.visualization


def test_concept_config_fields_are_extract_concepts_keywords():
    from concepts import extract_concepts

    keywords = inspect.signature(extract_concepts).parameters
    for f in fields(ConceptConfig):
        assert f.name in keywords, f.name


def test_class_lists_accept_indices_ranges_wnids_and_names():
    assert parse_class_list(["0-2", "goldfish,7"], CATEGORIES) == [0, 1, 2, 7]
    assert parse_class_list(["Cardigan", "cardigan"], CATEGORIES) == [264, 474]  # exact case picks one cardigan
    assert parse_class_list(["n02", "0"], ["a", "b"], ["n01", "n02"]) == [0, 1]


@pytest.mark.parametrize("value, message", [
    ("goldfsh", "`--classes` must be .*Close matches: 'goldfish' \\(1\\)"),
    ("1000", "`--classes` must be a class index in \\[0, 999\\]; got 1000"),
    ("CARDIGAN", "`--classes` is ambiguous: 'CARDIGAN' names classes 264 \\(Cardigan\\), 474 \\(cardigan\\)"),
    ("5-3", "range '5-3' is empty"),
])
def test_unknown_or_ambiguous_classes_get_clear_errors(value, message):
    with pytest.raises(ValueError, match=message):
        parse_class_list([value], CATEGORIES)


def test_imagenet_root_layout(tmp_path):
    for wnid in ("n01440764", "n01443537", "n01484850"):
        (tmp_path / wnid).mkdir()
    jobs = imagenet_jobs(tmp_path, ["1-2"])
    assert [(j.class_index, j.class_name, j.wnid, j.folder) for j in jobs] == [
        (1, "goldfish", "n01443537", tmp_path / "n01443537"),
        (2, "great white shark", "n01484850", tmp_path / "n01484850"),
    ]
    with pytest.raises(ValueError, match="`--imagenet-root` must be an existing folder"):
        imagenet_jobs(tmp_path / "missing", ["0"])


def test_imagenet_subset_keeps_standard_class_indices(tmp_path):
    for wnid in ("n01440764", "n02102040"):  # tench (0) and English springer (217) only
        (tmp_path / wnid).mkdir()
        Image.new("RGB", (12, 12), (200, 30, 30)).save(tmp_path / wnid / "a.png")
    (tmp_path / ".cache").mkdir()  # hidden folders are ignored
    springer = [(217, "English springer", "n02102040", tmp_path / "n02102040")]
    for spec in (["n02102040"], ["217"], ["English springer"], ["217-217"]):
        jobs = imagenet_jobs(tmp_path, spec)
        assert [(j.class_index, j.class_name, j.wnid, j.folder) for j in jobs] == springer
    assert [j.class_index for j in imagenet_jobs(tmp_path, ["tench,217"])] == [0, 217]
    assert [j.class_index for j in imagenet_jobs(tmp_path, ["all"])] == [0, 217]  # every class folder it holds
    missing = (r"`--classes` asks for class 1 \(goldfish\), whose folder n01443537/ is not in `--imagenet-root` .*: "
               r"n01440764/ \(0, tench\), n02102040/ \(217, English springer\)\. Pick classes present there")
    with pytest.raises(ValueError, match=missing):
        imagenet_jobs(tmp_path, ["1"])
    with pytest.raises(ValueError, match="asks for .* and 211 more"):
        imagenet_jobs(tmp_path, ["0-217"])
    (tmp_path / "misc").mkdir()
    with pytest.raises(ValueError, match="must hold only ILSVRC-2012 wnid folders .*misc/ is not one"):
        imagenet_jobs(tmp_path, ["217"])


@pytest.mark.slow
def test_resnet50_loads_from_a_local_weights_file(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), tmp_path / "r50.pth")
    split = imagenet_resnet50(weights_path=tmp_path / "r50.pth")
    assert torch.equal(split.model.fc.weight, reference.fc.weight)
    assert split.pooled_layer == "avgpool" and split.layer == "layer4"
    assert split.input_size == 224 and split.categories[1] == "goldfish"
    assert split.mean == (0.485, 0.456, 0.406)


def test_bad_weights_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        imagenet_resnet50("IMAGENET1K_V9")
    with pytest.raises(ValueError, match="none.pth: no such file"):
        imagenet_resnet50(weights_path=tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth is not a readable PyTorch weights file"):
        imagenet_resnet50(weights_path=tmp_path / "junk.pth")
    torch.save({"fc.weight": torch.zeros(3, 2048)}, tmp_path / "head.pth")
    with pytest.raises(ValueError, match="head.pth is not a state_dict of torchvision resnet50 .*Missing key"):
        imagenet_resnet50(weights_path=tmp_path / "head.pth")


def test_class_folders_follow_imagefolder(tmp_path):
    for name in ("b", "a", "10", "2", ".hidden"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "x.png")
    (tmp_path / "notes.txt").write_text("not a class")
    assert class_folders(tmp_path) == torchvision.datasets.ImageFolder(tmp_path).classes
    with pytest.raises(ValueError, match="`--data-root` .* is not a folder"):
        class_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="`--data-root` .* holds no class folders"):
        class_folders(tmp_path / "empty")


def test_folder_jobs_key_each_folder_by_the_class_it_names(tmp_path):
    names = ["cat", "dog", "hot dog", "10"]
    for name in ("hot dog", "cat", "10"):  # a subset, so the folders' own order would shift the indices
        (tmp_path / name).mkdir()
    jobs = folder_jobs(tmp_path, None, names)
    assert [(j.class_index, j.class_name, j.folder, j.wnid) for j in jobs] == [
        (0, "cat", tmp_path / "cat", None), (2, "hot dog", tmp_path / "hot dog", None),
        (3, "10", tmp_path / "10", None)]
    assert [j.class_index for j in folder_jobs(tmp_path, ["hot dog", "0"], names)] == [0, 2]
    with pytest.raises(ValueError, match=r"`--classes` asks for 1 \(dog\), whose folder is not in `--data-root`"):
        folder_jobs(tmp_path, ["dog"], names)
    (tmp_path / "cow").mkdir()
    with pytest.raises(ValueError, match="the folders cow/ name no class of the model"):
        folder_jobs(tmp_path, None, names)
