"""Every architecture end to end: a ViT's class-token concepts, MobileNetV3's MLP head, MaCo through a ViT.

The CLI runs use random weights saved to a local file and the smallest budgets; vit_b_16 runs at its own 224 px.
"""
import json

import pytest
import torch
import torchvision

from concepts import split_model
from maco import Objective, RenderSettings, render
from pipelines.cli import main

from .test_own_model import TINY_RUN, image_folder, save_weights

SMALLEST = [arg for arg in TINY_RUN if arg not in ("--inversions", "1")] + ["--inversions", "0", "--max-images", "2"]


def run_cli(tmp_path, model: str, *extra: str) -> dict:
    weights = save_weights(tmp_path, model, 3)
    root = image_folder(tmp_path / "data", ["ant", "bee", "cat"])
    out = tmp_path / "run"
    assert main(["-q", "run", "--model", model, "--weights", str(weights), "--data-root", str(root), "--classes", "bee",
                 "--out", str(out), *SMALLEST, *extra]) == 0
    page = (out / "classes" / "0001" / "index.html").read_text()
    assert (out / "index.html").is_file() and "Aligned classes" in page and "Semi-NMF" in page
    return json.loads((out / "classes" / "0001" / "class.json").read_text())


def test_a_mobilenet_v3_runs_with_semi_nmf_and_gradient_x_input(tmp_path):
    record = run_cli(tmp_path, "mobilenet_v3_small")
    assert record["factorization"] == "semi-nmf" and record["importance_method"] == "gradient-input"
    assert record["contributions"] == "gradient-input" and record["aligned_by"] == "mean logit gradients"
    assert len(record["concepts"][0]["aligned_classes"]) == 3


@pytest.mark.slow
def test_a_vit_b_16_runs_on_its_class_token(tmp_path):
    record = run_cli(tmp_path, "vit_b_16", "--patch-size", "160", "--max-images", "2")
    assert record["layer"] == "encoder" and record["factorization"] == "semi-nmf"
    assert record["importance_method"] == "exact" and record["aligned_by"] == "head weights"
    assert record["overlays"] and record["concepts"][0]["maps"]  # concept maps from the 14 x 14 patch tokens


def test_maco_renders_a_concept_direction_of_a_vit_at_its_input_size():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=5).eval()
    split = split_model(vit, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)
    directions = torch.randn(2, 16)
    objective = Objective.direction(split.model, split.pooled_layer, directions)
    result = render(objective, RenderSettings(steps=12, image_size=48, crops=2, seed=0), input_size=split.input_size,
                    mean=split.mean, std=split.std, device="cpu", progress=False)
    assert result.images.shape == (2, 3, 48, 48) and torch.isfinite(result.images).all()
    assert (result.history[-3:].mean(0) > result.history[:3].mean(0)).all()  # each direction's score rises
