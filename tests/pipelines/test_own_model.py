"""Your own model and classes from the command line: torchvision and timm models, local weights with any head.

Every model here has random weights saved to a local file (no download); the runs are tiny end-to-end CLI runs.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import pipelines.models as models
from concepts import extract_features
from pipelines.cli import main
from pipelines.concept_layer import feature_transform, resolve_factorization
from pipelines.models import load_model, model_meta, parse_model, read_state_dict

TINY_RUN = ["--k", "2", "--patch-size", "112", "--steps", "2", "--image-size", "64", "--crops", "2",
            "--inversions", "1", "--workers", "0", "--device", "cpu"]


def save_weights(tmp_path: Path, name: str, num_classes: int) -> Path:
    torch.manual_seed(0)
    path = tmp_path / f"{name}.pth"
    torch.save(getattr(torchvision.models, name)(weights=None, num_classes=num_classes).state_dict(), path)
    return path


def image_folder(root: Path, names, n_images: int = 2) -> Path:
    """An ImageFolder-style root: one folder of a few noise images per class name."""
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 255, (72, 80, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if weights are loaded (or downloaded): the checks must come first."""
    monkeypatch.setattr(models, "_with_weights", lambda *args: pytest.fail("weights were loaded before the check"))


def test_a_mobilenet_v2_on_three_class_folders_with_class_names(tmp_path, capsys):
    weights = save_weights(tmp_path, "mobilenet_v2", 3)
    (tmp_path / "names.txt").write_text("cat\ndog\nhot dog\n")
    root = image_folder(tmp_path / "data", ["cat", "dog", "hot dog"])
    out = tmp_path / "run"
    assert main(["-q", "run", "--model", "mobilenet_v2", "--weights", str(weights), "--class-names",
                 str(tmp_path / "names.txt"), "--data-root", str(root), "--classes", "dog", "2", "--out", str(out),
                 *TINY_RUN]) == 0
    model_id = f"torchvision/mobilenet_v2/sha256:{hashlib.sha256(weights.read_bytes()).hexdigest()}"
    run = json.loads((out / "run.json").read_text())
    assert run["model_id"] == model_id and sorted(run["classes"]) == ["1", "2"]
    record = json.loads((out / "classes" / "0002" / "class.json").read_text())
    assert record["class_name"] == "hot dog" and record["model_id"] == model_id and record["layer"] == "features"
    assert record["feature_transform"] is None and record["wnid"] is None
    aligned = record["concepts"][0]["aligned_classes"]  # read from the 3-class head, classifier[-1]
    assert len(aligned) == 3 and {a["class_name"] for a in aligned} == {"cat", "dog", "hot dog"}
    page = (out / "classes" / "0002" / "index.html").read_text()
    index = (out / "index.html").read_text()
    for html in (page, index):
        assert model_id in html and "<b>features</b>" in html


def test_a_resnet_with_a_five_class_head_from_a_local_file(tmp_path):
    weights = save_weights(tmp_path, "resnet18", 5)
    names = ["ant", "bee", "cicada", "dragonfly", "earwig"]
    root = image_folder(tmp_path / "data", names)  # ImageFolder's order: the folders, sorted, name the outputs
    out = tmp_path / "run"
    assert main(["-q", "run", "--model", "resnet18", "--weights", str(weights), "--data-root", str(root),
                 "--classes", "cicada", "--out", str(out), "--no-gallery", *TINY_RUN]) == 0
    record = json.loads((out / "classes" / "0002" / "class.json").read_text())
    assert record["class_name"] == "cicada" and record["layer"] == "layer4"
    assert record["model_id"].startswith("torchvision/resnet18/sha256:")
    assert {a["class_name"] for a in record["concepts"][0]["aligned_classes"]} == set(names)


def test_a_mobilenet_v3_with_signed_features_and_an_mlp_head_is_explained(tmp_path, caplog):
    weights = save_weights(tmp_path, "mobilenet_v3_small", 4)
    spec = parse_model("mobilenet_v3_small", str(weights))
    state = read_state_dict(weights)
    split = load_model(spec, model_meta(spec, state=state), state=state, categories=list("abcd"), concepts=True)
    assert split.layer == "features" and split.head_weight is None  # Linear, Hardswish, Dropout, Linear
    with caplog.at_level("INFO", logger="pipelines.concept_layer"):
        assert resolve_factorization(split, "auto") == "semi-nmf"
    assert "layer `features` of torchvision/mobilenet_v3_small" in caplog.text
    assert "it ends in Hardswish, whose outputs reach -0.375" in caplog.text and "Semi-NMF" in caplog.text
    with pytest.raises(ValueError, match=r"`--factorization nmf`: the features of layer `features` .* can be "
                                         r"negative \(it ends in Hardswish.*Use --factorization semi-nmf"):
        resolve_factorization(split, "nmf")
    with pytest.raises(ValueError, match=r"`--shift-features` needs a linear head .*\(Linear, Hardswish, Dropout, "
                                         r"Linear\) is not one"):
        load_model(spec, model_meta(spec, state=state), state=state, categories=list("abcd"), concepts=True,
                   shift_features=True)


def test_a_model_the_head_does_not_read_stops_before_any_work(tmp_path, capsys, no_weights):
    weights = save_weights(tmp_path, "resnet18", 4)
    root = image_folder(tmp_path / "data", ["a", "b", "c", "d"], n_images=1)
    out = tmp_path / "run"
    err = error_of(["run", "--model", "resnet18", "--weights", str(weights), "--data-root", str(root),
                    "--layer", "layer3", "--out", str(out)], capsys)
    assert "cannot explain torchvision/resnet18" in err and "at layer `layer3`" in err
    assert "not its head applied to the pooled output of this layer" in err and "concept-lens visualize" in err
    assert not (out / "run.json").exists() and not (out / "classes").exists()


def test_an_efficientnet_is_offered_the_shift_and_it_keeps_the_logits(tmp_path, capsys, monkeypatch):
    weights = save_weights(tmp_path, "efficientnet_b0", 2)
    spec = parse_model("efficientnet_b0", str(weights))
    state = read_state_dict(weights)
    meta = model_meta(spec, state=state)
    signed = load_model(spec, meta, state=state, categories=["a", "b"], concepts=True)  # Semi-NMF will do
    assert resolve_factorization(signed, "auto") == "semi-nmf"
    split = load_model(spec, meta, state=state, categories=["a", "b"], concepts=True, shift_features=True)
    assert "features + 0.2812 (SiLU's lowest output is -0.27846, +1 %)" in feature_transform(split)
    assert resolve_factorization(split, "auto") == "nmf"  # or NMF on the shifted features
    reference = torchvision.models.efficientnet_b0(num_classes=2).eval()
    reference.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    pooled = extract_features(split, x)
    assert float(pooled.min()) >= 0 and split.pooled_layer == "avgpool"
    with torch.no_grad():
        expected = reference(split.prepare(x))
        torch.testing.assert_close(split.logits(pooled), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(split.model(split.prepare(x)), expected, atol=1e-4, rtol=1e-4)
    assert all(p is not q for p in split.model.parameters() for q in reference.parameters())
    assert feature_transform(load_model(spec, meta, state=state)) is None


def test_a_layer_the_head_does_not_read_lists_the_layers_it_does(tmp_path, no_weights):
    weights = save_weights(tmp_path, "resnet18", 3)
    spec = parse_model("resnet18", str(weights))
    state = read_state_dict(weights)
    meta = model_meta(spec, state=state)
    with pytest.raises(ValueError, match=r"at layer `layer3`: .*not its head applied to the pooled output.*"
                                         r"--layer: layer4.1, layer4\. Feature"):
        load_model(spec, meta, state=state, categories=list("abc"), layer="layer3", concepts=True)
    with pytest.raises(ValueError, match=r"`--layer`: `layer` 'layer5' is not a module of ResNet. Close matches"):
        load_model(spec, meta, state=state, categories=list("abc"), layer="layer5", concepts=True)
    with pytest.raises(ValueError, match=r"`--shift-features`: layer `layer4` .* ends in ReLU, which has no known "
                                         r"lower bound"):
        load_model(spec, meta, state=state, categories=list("abc"), shift_features=True, concepts=True)


def test_a_chosen_layer_is_where_the_concepts_live(tmp_path):
    weights = save_weights(tmp_path, "resnet18", 3)
    spec = parse_model("resnet18", str(weights))
    state = read_state_dict(weights)
    split = load_model(spec, model_meta(spec, state=state), state=state, layer="layer4.1", concepts=True)
    assert split.layer == "layer4.1" and split.categories is None
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = split.model(split.prepare(x))
    torch.testing.assert_close(split.logits(extract_features(split, x)), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet5O"], r"`--model` 'resnet5O' is not a torchvision classification model. Close matches: "
                              r"resnet50"),
    (["--weights", "IMAGENET1K_V9"], r"`--weights` 'IMAGENET1K_V9' is neither a file nor a weights name of resnet50 "
                                     r"\(IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT\)"),
    (["--mean", "0.5", "0.5", "0.5"], r"`--mean`/`--std` are for a local weights file; torchvision weights "
                                      r"IMAGENET1K_V2 of resnet50 carry their own normalisation"),
    (["--class-names", "NAMES"], r"`--class-names` is for a local weights file; the IMAGENET1K_V2 weights of "
                                 r"resnet50 name their 1000 classes themselves"),
])
def test_named_weights_bring_their_metadata_and_refuse_conflicting_arguments(tmp_path, capsys, no_weights, argv,
                                                                             message):
    (tmp_path / "NAMES").write_text("a\n")
    root = image_folder(tmp_path / "data", ["goldfish"], n_images=1)
    argv = [a.replace("NAMES", str(tmp_path / "NAMES")) for a in argv]
    err = error_of(["run", "--data-root", str(root), "--out", str(tmp_path / "o"), *argv], capsys)
    assert re.search(message, err), err


def test_class_names_must_fit_the_head_and_folders_must_be_classes(tmp_path, capsys, no_weights):
    weights = save_weights(tmp_path, "resnet18", 3)
    root = image_folder(tmp_path / "data", ["cat", "dog"], n_images=1)
    names = tmp_path / "names.txt"
    base = ["run", "--model", "resnet18", "--weights", str(weights), "--out", str(tmp_path / "o")]
    names.write_text("cat\ndog\n")
    err = error_of([*base, "--data-root", str(root), "--class-names", str(names)], capsys)
    assert "names 2 classes but the head of `--weights`" in err and "has 3 outputs" in err
    err = error_of([*base, "--data-root", str(root)], capsys)
    assert "has 2 class folders but the head of `--weights`" in err and "`--class-names FILE` with the 3 names" in err
    err = error_of([*base, "--images", str(root / "cat"), "--class-index", "0"], capsys)
    assert "has 3 classes; name them with `--class-names FILE`" in err
    names.write_text("cat\ncow\ndog\n")
    (root / "doge").mkdir()
    err = error_of([*base, "--data-root", str(root), "--class-names", str(names)], capsys)
    assert "the folders doge/ name no class of the model (close to doge: dog)" in err
    names.write_text("cat\ncat\ndog\n")
    err = error_of([*base, "--data-root", str(root), "--class-names", str(names)], capsys)
    assert "names classes more than once (cat)" in err
    err = error_of([*base, "--imagenet-root", str(root), "--classes", "0"], capsys)
    assert "`--imagenet-root` is for ImageNet-1k models" in err and "has 3 classes of its own" in err


def test_visualize_works_on_a_model_the_concept_stage_refuses(tmp_path):
    weights = save_weights(tmp_path, "mobilenet_v3_small", 4)
    out = tmp_path / "neuron.png"
    assert main(["-q", "visualize", "--model", "mobilenet_v3_small", "--weights", str(weights), "--layer",
                 "classifier", "--neuron", "3", "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5",
                 "-o", str(out), "--steps", "2", "--image-size", "64", "--crops", "2", "--device", "cpu"]) == 0
    with Image.open(out) as image:
        assert image.size == (64, 64)


def test_timm_models_need_timm(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails, as where it is not installed
    err = error_of(["visualize", "--model", "timm:resnet18", "--neuron", "0", "-o", str(tmp_path / "x.png")], capsys)
    assert "`--model timm:...` needs timm" in err and "pip install 'concept-lens[timm]'" in err


def test_a_timm_model_from_a_local_file(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    path = tmp_path / "lite.pth"
    torch.save(timm.create_model("efficientnet_lite0", pretrained=False, num_classes=2).state_dict(), path)
    spec = parse_model("timm:efficientnet_lite0", str(path))
    state = read_state_dict(path)
    meta = model_meta(spec, state=state, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    split = load_model(spec, meta, state=state, categories=["a", "b"], concepts=True)
    assert split.layer == "forward_features" and split.pooled_layer == "global_pool" and split.mean == (0.5,) * 3
    assert split.model_id.startswith("timm/efficientnet_lite0/sha256:") and split.head_weight.shape == (2, 1280)
    err = error_of(["visualize", "--model", "timm:efficientnet_lit0", "--neuron", "0", "-o", str(tmp_path / "x.png")],
                   capsys)
    assert "timm has no model 'efficientnet_lit0'. Close matches: efficientnet_lite0" in err


def test_a_timm_convnext_whose_head_normalises_is_read_through_it(tmp_path):
    timm = pytest.importorskip("timm")
    path = tmp_path / "convnext.pth"
    torch.save(timm.create_model("convnext_atto", pretrained=False, num_classes=3).state_dict(), path)
    spec = parse_model("timm:convnext_atto", str(path))
    state = read_state_dict(path)
    split = load_model(spec, model_meta(spec, state=state), state=state, categories=list("abc"), concepts=True)
    assert split.head_weight is None  # NormMlpClassifierHead: LayerNorm2d before its fc
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(split.logits(extract_features(split, x)), split.model(split.prepare(x)),
                                   rtol=1e-4, atol=1e-4)
