import inspect
from dataclasses import fields

import pytest
import torch
import torchvision
from PIL import Image

from maco import maco
from pipelines.config import ConceptConfig, VisualizationConfig
from pipelines.jobs import imagenet_jobs, parse_class_list, resolve_class
from pipelines.models import resnet50_bundle

CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"]


def test_visualization_config_fields_are_maco_keywords():
    keywords = inspect.signature(maco).parameters
    for f in fields(VisualizationConfig):
        assert f.name in keywords, f.name
        assert keywords[f.name].kind is inspect.Parameter.KEYWORD_ONLY


def test_concept_config_fields_are_extract_concepts_keywords():
    from concepts import extract_concepts

    keywords = inspect.signature(extract_concepts).parameters
    for f in fields(ConceptConfig):
        assert f.name in keywords, f.name


def test_class_lists_accept_indices_ranges_wnids_and_names():
    assert parse_class_list(["0-2", "goldfish,7"], CATEGORIES) == [0, 1, 2, 7]
    assert resolve_class("Cardigan", CATEGORIES) == 264  # exact case picks one of the two cardigans
    assert resolve_class("n02", CATEGORIES, ["n01", "n02"]) == 1


@pytest.mark.parametrize("value, message", [
    ("goldfsh", "Close matches: goldfish"),
    ("1000", "out of range"),
    ("CARDIGAN", "ambiguous: 264 \\(Cardigan\\), 474 \\(cardigan\\)"),
])
def test_unknown_or_ambiguous_classes_get_clear_errors(value, message):
    with pytest.raises(ValueError, match=message):
        resolve_class(value, CATEGORIES)


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
    with pytest.raises(ValueError, match=r"asks for 1 \(goldfish, folder n01443537/\), not in `--imagenet-root`"):
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
    bundle = resnet50_bundle(weights_path=tmp_path / "r50.pth")
    assert torch.equal(bundle.model.fc.weight, reference.fc.weight)
    assert bundle.layer == "avgpool" and bundle.input_size == 224 and bundle.categories[1] == "goldfish"
    assert bundle.mean == (0.485, 0.456, 0.406)


def test_bad_weights_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        resnet50_bundle("IMAGENET1K_V9")
    with pytest.raises(ValueError, match="must be an existing file"):
        resnet50_bundle(weights_path=tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="must hold a torchvision ResNet50 state_dict"):
        resnet50_bundle(weights_path=tmp_path / "junk.pth")
