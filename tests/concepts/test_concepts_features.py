"""Model split and feature extraction: layouts, normalisation, crops, negative features, ResNet50."""
from __future__ import annotations

import time

import pytest
import torch
import torchvision

from concepts import ModelSplit, extract_crops, extract_features, resnet50_split, split_model


def test_split_model_forward_features_layout(tiny_net, tiny_split, images):
    assert tiny_split.layer == "layer4" and tiny_split.model_id == "tiny"
    assert tiny_split.head_weight.shape == (4, 16) and tiny_split.head_bias.shape == (4,)
    pooled = extract_features(tiny_split, images, batch_size=4)
    assert pooled.shape == (6, 16) and pooled.dtype == torch.float32
    with torch.no_grad():
        logits = tiny_net(tiny_split.normalize(images))
    torch.testing.assert_close(tiny_split.h(pooled), logits, atol=1e-5, rtol=1e-5)
    spatial = extract_features(tiny_split, images, pooled=False)
    assert spatial.shape == (6, 16, 8, 8) and float(spatial.min()) >= 0


def test_split_model_resnet_layout_without_methods():
    model = torchvision.models.resnet18(num_classes=3)
    split = split_model(model, mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2), input_size=64)
    x = torch.rand(2, 3, 64, 64)
    feats = extract_features(split, x, pooled=False)
    assert feats.shape == (2, 512, 2, 2) and split.layer == "layer4" and split.pooled_layer == "avgpool"
    with torch.no_grad():
        expected = model.eval()(split.normalize(x))
        torch.testing.assert_close(split.h(feats.mean((2, 3))), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(split.logits(feats.mean((2, 3))), expected, atol=1e-4, rtol=1e-4)


def test_the_callers_model_is_given_back_as_it_was_found():
    """split_model and extract_features run the model in inference mode, then restore its modes and flags."""
    model = torchvision.models.resnet18(num_classes=3).train()
    model.layer1.requires_grad_(False)
    before = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    split = split_model(model, mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2), input_size=64)
    running_mean = model.bn1.running_mean.clone()
    extract_features(split, torch.rand(2, 3, 64, 64))
    after = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    assert after == before
    torch.testing.assert_close(model.bn1.running_mean, running_mean)  # ran in eval mode: statistics untouched


def test_split_model_timm_layout_reads_the_linear_head_from_get_classifier(tiny_net, images):
    """timm models name the head `classifier` (or `head.fc`) and expose it with `get_classifier()`."""
    class TimmLike(type(tiny_net)):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = self.fc
            del self.fc

        def get_classifier(self) -> torch.nn.Module:
            return self.classifier

        def forward_head(self, f: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(f), 1))

    model = TimmLike()
    model.load_state_dict({k.replace("fc.", "classifier."): v for k, v in tiny_net.state_dict().items()})
    split = split_model(model, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32)
    assert split.layer == "layer4"
    torch.testing.assert_close(split.head_weight, model.classifier.weight)
    torch.testing.assert_close(split.head_bias, model.classifier.bias)
    pooled = extract_features(split, images, batch_size=4)
    with torch.no_grad():
        torch.testing.assert_close(split.h(pooled), model(split.normalize(images)), atol=1e-5, rtol=1e-5)


def test_split_model_rejects_unknown_layout():
    with pytest.raises(ValueError, match="`model` of `split_model` must have `forward_features`"):
        split_model(torch.nn.Linear(3, 3), mean=(0, 0, 0), std=(1, 1, 1), input_size=8)
    with pytest.raises(ValueError, match="`mean` of `split_model` must be 3 floats"):
        split_model(torchvision.models.resnet18(), mean=(0.5,), std=(1, 1, 1), input_size=8)


def test_extract_features_of_crops_equals_explicit_crops(tiny_split, images):
    crops = extract_crops(images, patch_size=16, out_size=32)
    assert len(crops) == 6 * 4  # stride 12 on 32 px: offsets 0 and 12 -> 2 x 2
    lazy = extract_features(tiny_split, crops, batch_size=10)
    explicit = extract_features(tiny_split, crops.batch(0, len(crops)), batch_size=64)
    torch.testing.assert_close(lazy, explicit)


def test_negative_activations_are_features_too(tiny_net, images):
    tiny_net.negative = True  # signed features are Semi-NMF's (tests/concepts/test_concepts_any_head.py)
    split = split_model(tiny_net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32, layer="block7.conv")
    assert float(extract_features(split, images).min()) < 0


def test_model_split_accepts_plain_callables(images):
    split = ModelSplit(g=lambda x: torch.relu(x[:, :2]), h=lambda f: f.sum(1, keepdim=True), mean=(0, 0, 0),
                       std=(1, 1, 1), input_size=32)
    assert extract_features(split, images).shape == (6, 2)


@pytest.mark.slow
def test_resnet50_split_from_local_weights_file(tmp_path):
    start = time.perf_counter()
    model = torchvision.models.resnet50()
    path = tmp_path / "resnet50.pt"
    torch.save(model.state_dict(), path)
    split = resnet50_split("IMAGENET1K_V2", weights_path=path)
    assert split.layer == "layer4" and split.input_size == 224
    assert split.categories[0] == "tench" and len(split.categories) == 1000
    assert split.mean == pytest.approx((0.485, 0.456, 0.406))
    torch.testing.assert_close(split.head_weight, model.fc.weight)
    feats = extract_features(split, torch.rand(1, 3, 64, 64), pooled=False)  # resized to 224
    assert feats.shape == (1, 2048, 7, 7)
    with pytest.raises(ValueError, match="`weights_path` of `load_resnet50` must be an existing file"):
        resnet50_split(weights_path=tmp_path / "missing.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="must hold a torchvision ResNet50 state_dict"):
        resnet50_split(weights_path=tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="`weights` of `load_resnet50` must be one of"):
        resnet50_split("IMAGENET1K_V9", weights_path=path)
    assert time.perf_counter() - start < 120


def _recording(split: ModelSplit, seen: list):
    """The split's features, recording whether each batch ran in bf16 autocast and channels_last."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append((torch.is_autocast_enabled(x.device.type), x.is_contiguous(memory_format=torch.channels_last)))
        return split.g(x).float().mean((2, 3))
    return fn


@pytest.mark.parametrize("crops", [False, True])
def test_map_batches_runs_the_gpu_path_on_request_and_stays_close_to_float32(tiny_split, images, crops):
    """amp / channels_last None means CUDA only (float32 here); True runs bf16 + channels_last on the CPU too."""
    inputs = extract_crops(images, patch_size=16, out_size=32) if crops else images
    default_seen, gpu_seen = [], []
    fp32 = tiny_split.map_batches(inputs, _recording(tiny_split, default_seen), batch_size=4)
    bf16 = tiny_split.map_batches(inputs, _recording(tiny_split, gpu_seen), batch_size=4, amp=True,
                                  channels_last=True)
    n_batches = -(-len(inputs) // 4)
    assert default_seen == [(False, False)] * n_batches and gpu_seen == [(True, True)] * n_batches
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    # bf16 keeps 8 mantissa bits: each feature within 2% of itself or of the largest (measured: 1% and 0.15%)
    torch.testing.assert_close(bf16, fp32, atol=0.02 * float(fp32.abs().max()), rtol=0.02)
    assert not torch.equal(bf16, fp32)  # bf16 really ran


def test_map_batches_options_are_checked(tiny_split, images):
    with pytest.raises(TypeError, match=r"`amp` of `ModelSplit.map_batches` must be True, False or None"):
        tiny_split.map_batches(images, tiny_split.g, amp=1)
    with pytest.raises(TypeError, match=r"`channels_last` of `ModelSplit.map_batches` must be True, False or None"):
        tiny_split.map_batches(images, tiny_split.g, channels_last="cuda")


@pytest.mark.parametrize("name, layer, pooled_layer, head", [
    ("regnet_y_400mf", "trunk_output", "avgpool", "fc"),
    ("efficientnet_b0", "features", "avgpool", "classifier.1"),
    ("mobilenet_v2", "features", "classifier.0", "classifier.1"),  # pools with a function: the dropout shows it
    ("mobilenet_v3_small", "features", "avgpool", None),  # Linear, Hardswish, Dropout, Linear: not linear
    ("convnext_tiny", "features", "avgpool", None),  # LayerNorm2d, Flatten, Linear: not linear
])
def test_split_model_torchvision_families(name, layer, pooled_layer, head):
    """g, the pooled layer and h of each family give the model's own logits; the head is linear only where it is."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=3).eval()
    split = split_model(model, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=64)
    assert (split.layer, split.pooled_layer) == (layer, pooled_layer)
    modules = dict(model.named_modules())
    pooled = []
    handle = modules[pooled_layer].register_forward_hook(lambda m, i, o: pooled.append(o.flatten(1)))
    x = split.normalize(torch.rand(2, 3, 64, 64))
    with torch.no_grad():
        features = split.g(x)
        expected = model(x)
    handle.remove()
    torch.testing.assert_close(pooled[0], features.mean((2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(split.h(features.mean((2, 3))), expected, atol=1e-5, rtol=1e-5)
    if head is None:
        assert split.head_weight is None and split.head_bias is None
    else:
        assert torch.equal(split.head_weight, modules[head].weight)
        assert torch.equal(split.head_bias, modules[head].bias)


def test_extract_features_runs_in_bf16_and_channels_last_on_request(tiny_split, images):
    """The CUDA mode, asked for on the CPU: every forward pass of g runs under bf16 autocast on channels_last inputs."""
    seen = []
    module = next(m for part in tiny_split.modules() for m in part.modules() if isinstance(m, torch.nn.Conv2d))
    handle = module.register_forward_pre_hook(
        lambda _, args: seen.append((torch.is_autocast_enabled("cpu"),
                                     args[0].is_contiguous(memory_format=torch.channels_last)))
    )
    try:
        fast = extract_features(tiny_split, images, amp=True, channels_last=True)
        plain = extract_features(tiny_split, images)
    finally:
        handle.remove()
    n = len(seen) // 2
    assert n >= 1 and seen[:n] == [(True, True)] * n and all(not amp for amp, _ in seen[n:])
    torch.testing.assert_close(fast, plain, atol=0.05, rtol=0.05)  # bf16 rounding only
