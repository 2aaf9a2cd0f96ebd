"""The small CLI subcommands: spectrum, visualize, gallery."""

import hashlib

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from concepts import ConceptBank
from pipelines.cli import main


def test_spectrum_command_writes_a_loadable_spectrum(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    assert main(["spectrum", "--images", str(tmp_path), "-o", str(tmp_path / "s.npy"), "--size", "32"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 32, 17)
    assert "s.npy" in capsys.readouterr().out


@pytest.mark.slow
def test_visualize_command_renders_a_resnet50_neuron_from_a_local_weights_file(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    out = tmp_path / "neuron.png"
    code = main(
        [
            "-q",
            "visualize",
            "--layer",
            "fc",
            "--neuron",
            "1",
            "-o",
            str(out),
            "--weights",
            str(tmp_path / "r50.pth"),
            "--steps",
            "2",
            "--image-size",
            "64",
            "--crops",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    with Image.open(out) as image:
        assert image.size == (64, 64) and image.mode == "RGB"


def test_visualize_command_rejects_an_unknown_layer(tmp_path, capsys):
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "visualize",
                "--layer",
                "layer9",
                "--channel",
                "0",
                "-o",
                str(tmp_path / "x.png"),
                "--weights",
                str(tmp_path / "r50.pth"),
            ]
        )
    assert exit_info.value.code == 2 and "Close matches" in capsys.readouterr().err


def test_gallery_command_needs_a_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["gallery", str(tmp_path)])
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_run_command_on_an_image_folder_with_local_weights(tmp_path, capsys):
    import json

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    images = tmp_path / "goldfish"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (240, 260, 3), dtype=np.uint8)).save(images / f"{i}.jpg")
    out = tmp_path / "run"
    code = main(
        [
            "-q",
            "run",
            "--images",
            str(images),
            "--class-index",
            "goldfish",
            "--weights",
            str(tmp_path / "r50.pth"),
            "--out",
            str(out),
            "--k",
            "2",
            "--steps",
            "2",
            "--image-size",
            "64",
            "--crops",
            "2",
            "--inversions",
            "1",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--importance",
            "sobol",
            "--importance-on",
            "crops",
        ]
    )
    assert code == 0
    record = json.loads((out / "classes" / "0001" / "class.json").read_text())
    assert record["importance"] == "sobol on crops"
    bank = ConceptBank.load(out / "classes" / "0001" / "bank")  # the ranking is the crops' mean Sobol index
    assert bank.importance == "sobol" and list(bank.order) == list(np.argsort(-bank.importance_scores, kind="stable"))
    assert [c["concept_id"] for c in record["concepts"]] == list(bank.order)
    digest = hashlib.sha256((tmp_path / "r50.pth").read_bytes()).hexdigest()
    assert record["class_name"] == "goldfish" and record["n_concepts"] == 2
    assert record["model_id"] == f"torchvision/resnet50/sha256:{digest}" and record["layer"] == "layer4"
    assert (out / "index.html").is_file() and "gallery:" in capsys.readouterr().out
