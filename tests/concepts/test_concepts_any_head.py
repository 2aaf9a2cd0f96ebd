"""Concepts for every architecture: signed features (Semi-NMF), heads that are not linear, ViT tokens."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from concepts import (ConceptBank, TokenLayout, class_directions, concept_maps, extract_concepts, extract_features,
                      gradient_contributions, gradient_x_input, linear_contributions, split_model)

NORM = {"mean": (0.5,) * 3, "std": (0.25,) * 3}


class MLPHead(nn.Module):
    """The TinyNet of conftest with MobileNetV3's kind of head: pooled -> Linear -> Hardswish -> Linear."""

    def __init__(self, channels: int = 16, num_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.Hardswish())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(channels, 12), nn.Hardswish(), nn.Linear(12, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def tiny_vit(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                                mlp_dim=32, num_classes=num_classes).eval()


@pytest.fixture
def mlp_split():
    torch.manual_seed(0)
    return split_model(MLPHead().eval(), input_size=32, categories=list("abcd"), **NORM)


def test_gradient_x_input_on_a_linear_head_is_the_exact_contributions(tiny_split, images):
    pooled = extract_features(tiny_split, images)
    W = torch.rand(3, pooled.shape[1])
    codes = torch.rand(len(pooled), 3)
    exact = linear_contributions(pooled, codes, W, tiny_split.head_weight[2], float(tiny_split.head_bias[2]))
    through_head = gradient_contributions(pooled, codes, W, tiny_split.h, 2)
    torch.testing.assert_close(gradient_x_input(pooled, codes, W, tiny_split.h, 2), exact.contributions,
                               rtol=1e-5, atol=1e-6)
    for name in ("contributions", "residual", "logits"):
        torch.testing.assert_close(getattr(through_head, name), getattr(exact, name), rtol=1e-5, atol=1e-5)
    assert through_head.bias == pytest.approx(exact.bias, abs=1e-6)


def test_a_non_linear_head_gets_gradient_input_semi_nmf_and_its_own_directions(mlp_split, images, tmp_path):
    assert mlp_split.head_weight is None
    with pytest.raises(ValueError, match="'exact', which needs a linear head.*'gradient-input'"):
        extract_concepts(mlp_split, images, 1, n_concepts=3, patch_size=16, progress=False, importance="exact")
    with pytest.raises(ValueError, match=r"'nmf', but the features go negative .*'semi-nmf'"):
        extract_concepts(mlp_split, images, 1, n_concepts=3, patch_size=16, progress=False, factorization="nmf")
    bank = extract_concepts(mlp_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=4, progress=False)
    assert bank.factorization == "semi-nmf" and bank.importance == "gradient-input"
    assert (bank.W < 0).any() and (bank.U >= 0).all()
    pooled = extract_features(mlp_split, images)
    logits = mlp_split.logits(pooled)[:, 1].double().numpy()
    torch.testing.assert_close(torch.as_tensor(bank.logits), torch.as_tensor(logits), rtol=1e-5, atol=1e-5)
    total = bank.contributions.sum(1) + bank.residual + bank.bias  # gradient x input still adds up to the logit
    torch.testing.assert_close(torch.as_tensor(total), torch.as_tensor(logits), rtol=1e-5, atol=1e-5)
    assert bank.bias == pytest.approx(float(mlp_split.logits(torch.zeros(1, pooled.shape[1]))[0, 1]), abs=1e-5)
    directions, aligned_by = class_directions(mlp_split, pooled)
    assert aligned_by == "mean logit gradients" and directions.shape == (4, pooled.shape[1])
    torch.testing.assert_close(torch.as_tensor(bank.class_weight), directions[1], rtol=1e-4, atol=1e-6)
    sobol = extract_concepts(mlp_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=4, progress=False,
                             importance="sobol")
    assert sobol.importance == "sobol" and sobol.factorization == "semi-nmf"
    assert ConceptBank.load(bank.save(tmp_path / "bank")).factorization == "semi-nmf"
    maps = concept_maps(mlp_split, bank, images[:2])
    assert maps.shape == (2, 3, 32, 32) and float(maps.min()) >= 0


def test_class_directions_of_a_linear_head_are_its_weights(tiny_split, images):
    directions, aligned_by = class_directions(tiny_split, extract_features(tiny_split, images))
    assert aligned_by == "head weights" and torch.equal(directions, tiny_split.head_weight.float())


def test_non_negative_features_keep_nmf_and_exact(tiny_split, images):
    bank = extract_concepts(tiny_split, images, 1, n_concepts=3, patch_size=16, sobol_designs=0, progress=False)
    assert bank.factorization == "nmf" and bank.importance == "exact" and (bank.W >= 0).all()


def test_a_torchvision_vit_reads_its_class_token_and_maps_its_patch_tokens(images):
    vit = tiny_vit()
    split = split_model(vit, input_size=32, **NORM)
    assert split.tokens == TokenLayout(1, "token") and split.layer == "encoder" and split.head_weight.shape == (5, 16)
    x = split.prepare(images)
    with torch.no_grad():
        tokens = split.g(x)
        expected = vit(x)
    assert tokens.shape == (6, 1 + 16, 16)
    pooled = extract_features(split, images)
    torch.testing.assert_close(pooled, tokens[:, 0])  # the class token, not the mean of the patch tokens
    torch.testing.assert_close(split.logits(pooled), expected, rtol=1e-5, atol=1e-5)
    grid = extract_features(split, images, pooled=False)
    assert grid.shape == (6, 16, 4, 4)
    torch.testing.assert_close(grid[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])  # row-major patch order
    with torch.no_grad():  # the view MaCo optimises through: the same logits, the pooled features in `pooled`
        torch.testing.assert_close(split.model(x), expected, rtol=1e-5, atol=1e-6)
    assert split.pooled_layer == "pooled" and "encoder.layers.encoder_layer_0" in dict(split.model.named_modules())
    bank = extract_concepts(split, images, 2, n_concepts=3, patch_size=16, sobol_designs=0, progress=False)
    assert bank.factorization == "semi-nmf" and bank.importance == "exact"
    assert concept_maps(split, bank, images[:2]).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="must be the ViT's own image size 32"):
        split_model(vit, input_size=224, **NORM)


def test_a_vit_block_as_the_layer_puts_the_final_norm_in_the_head(images):
    vit = tiny_vit()
    split = split_model(vit, input_size=32, layer="encoder.layers.encoder_layer_0", **NORM)
    assert split.head_weight is None and split.layer == "encoder.layers.encoder_layer_0"
    with torch.no_grad():
        torch.testing.assert_close(split.logits(extract_features(split, images)), vit(split.prepare(images)),
                                   rtol=1e-5, atol=1e-5)
    bank = extract_concepts(split, images, 0, n_concepts=2, patch_size=16, sobol_designs=0, progress=False)
    assert bank.importance == "gradient-input" and bank.factorization == "semi-nmf"


@pytest.mark.parametrize("pool, prefix", [("token", 1), ("avg", 5)])
def test_timm_vits_token_and_mean_pooled_with_register_tokens(images, pool, prefix):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8,
                            depth=1, global_pool=pool, reg_tokens=prefix - 1).eval()
    split = split_model(vit, input_size=32, **NORM)
    assert split.tokens == TokenLayout(prefix, pool) and split.layer == "norm"
    assert (split.head_weight is None) == (pool == "avg")  # avg: timm's fc_norm (a LayerNorm) is in the head
    with torch.no_grad():
        torch.testing.assert_close(split.logits(extract_features(split, images)), vit(split.prepare(images)),
                                   rtol=1e-5, atol=1e-5)
    assert extract_features(split, images, pooled=False).shape == (6, 192, 4, 4)
    block = split_model(vit, input_size=32, layer="blocks.0", **NORM)
    with torch.no_grad():
        torch.testing.assert_close(block.logits(extract_features(block, images)), vit(block.prepare(images)),
                                   rtol=1e-5, atol=1e-5)


def test_a_torchvision_convnext_reads_its_normalising_head_through_gradient_x_input(images):
    """convnext_tiny's layout (features, avgpool, classifier = LayerNorm2d, Flatten, Linear), two small stages."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    torch.manual_seed(0)
    model = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=4).eval()
    split = split_model(model, input_size=32, categories=list("abcd"), **NORM)
    assert split.head_weight is None and split.layer == "features"
    pooled = extract_features(split, images)
    with torch.no_grad():  # the split's head on the pooled features is the model (the images are 32 px already)
        logits = model(torchvision.transforms.functional.normalize(images, **NORM))
    torch.testing.assert_close(split.logits(pooled), logits, rtol=1e-4, atol=1e-5)
    bank = extract_concepts(split, images, 2, n_concepts=2, patch_size=16, sobol_designs=0, progress=False)
    assert bank.factorization == "semi-nmf" and bank.importance == "gradient-input"
    total = bank.contributions.sum(1) + bank.residual + bank.bias
    torch.testing.assert_close(torch.as_tensor(total), torch.as_tensor(bank.logits), rtol=1e-5, atol=1e-5)
