from dataclasses import replace

import pytest
import torch
from torch import nn

from maco import (
    CropsAndNoise,
    FourierImage,
    MacoImage,
    NonFiniteScoreError,
    Objective,
    PixelImage,
    RenderResult,
    RenderSettings,
    default_spectrum,
    fold_batchnorm,
    fourier,
    maco,
    pixels,
    render,
)
from maco.transforms import target_generators

from .maco_budget import FAST


def test_single_target_unpacks_without_the_target_axis(tiny_net):
    image, alpha = maco(Objective.neuron(tiny_net, "fc", 1), seed=0, **FAST)
    assert image.shape == (3, 64, 64) and alpha.shape == (1, 64, 64)
    assert image.device.type == "cpu" and alpha.min() >= 0 and alpha.sum() > 0


def test_many_targets_give_a_batch(tiny_net):
    result = maco(Objective.direction(tiny_net, "avgpool", torch.rand(3, 16)), seed=0, **FAST)
    images, alphas = result
    assert images.shape == (3, 3, 64, 64) and alphas.shape == (3, 1, 64, 64)
    assert result.names == [f"direction(avgpool, {i})" for i in range(3)]
    assert result.seeds == [0, 1, 2]


def test_batched_targets_equal_single_runs_with_the_same_seeds(tiny_net):
    batch = maco(Objective.neuron(tiny_net, "fc", [0, 1, 2]), seed=5, **FAST)
    for t in range(3):
        single = maco(Objective.neuron(tiny_net, "fc", t), seed=5 + t, **FAST)
        # NAdam at lr 1.0 turns float rounding in near-zero gradients into rare 1e-3 pixel differences.
        difference = (batch.images[t] - single.images[0]).abs()
        assert difference.max() < 5e-3 and difference.mean() < 1e-4
        torch.testing.assert_close(batch.history[:, t], single.history[:, 0], atol=1e-4, rtol=1e-4)


def test_chunked_forward_passes_give_the_same_step(tiny_net):
    objective = Objective.neuron(tiny_net, "fc", [0, 1, 2])
    steps = {**FAST, "steps": 3}  # few steps: NAdam at lr 1.0 amplifies float rounding over longer runs
    whole = maco(objective, seed=1, **steps)
    chunked = maco(objective, seed=1, max_batch=6, **steps)  # 12 crops in chunks of 6
    torch.testing.assert_close(chunked.history, whole.history, atol=1e-5, rtol=1e-5)
    assert (chunked.images - whole.images).abs().max() < 1e-4


def test_same_seed_same_images_other_seed_other_images(tiny_net):
    objective = Objective.channel(tiny_net, "layer1", 3)
    a, b, c = (maco(objective, seed=s, **FAST) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.alphas, b.alphas)
    assert not torch.allclose(a.images, c.images)


def test_direction_visualization_points_to_its_own_vector():
    # Pooled features of a shallow random net hardly depend on the phase once the
    # magnitude is fixed, so use a net whose pooled features are colour opponents.
    conv = nn.Conv2d(3, 6, 1, bias=False)
    opponents = [[2, -1, -1], [-1, 2, -1], [-1, -1, 2], [-2, 1, 1], [1, -2, 1], [1, 1, -2]]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(opponents, dtype=torch.float32)[:, :, None, None])
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2)).eval()
    vectors = torch.eye(6)[[0, 2]]  # "red" and "blue"
    result = maco(Objective.direction(net, 2, vectors), seed=0, **{**FAST, "steps": 20})
    x = nn.functional.interpolate(result.images, size=32, mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = net[:3]((x - mean) / std).flatten(1)
    cos = nn.functional.cosine_similarity(feats[:, None], vectors[None], dim=-1)
    assert (cos.argmax(1) == torch.arange(2)).all(), cos  # each image is closest to its own vector
    assert (cos.argmax(0) == torch.arange(2)).all(), cos  # and each vector to its own image


def test_model_is_frozen_during_the_run_and_restored(tiny_net):
    tiny_net.train()
    tiny_net.layer1[1].eval()
    tiny_net.fc.weight.requires_grad_(False)
    seen = []
    tiny_net.fc.register_forward_hook(lambda m, i, o: seen.append((m.training, m.weight.requires_grad)))
    maco(Objective.neuron(tiny_net, "fc", 0), seed=0, fold_bn=False, **FAST)
    assert set(seen) == {(False, False)}
    assert tiny_net.training and not tiny_net.layer1[1].training
    assert not tiny_net.fc.weight.requires_grad and tiny_net.conv1.weight.requires_grad
    assert all(p.grad is None for p in tiny_net.parameters())


def test_folding_batchnorm_keeps_outputs_and_names(tiny_net):
    probe = torch.randn(4, 3, 32, 32)
    folded = fold_batchnorm(tiny_net, probe)
    torch.testing.assert_close(folded(probe), tiny_net(probe), atol=1e-5, rtol=1e-5)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.layer1[1], nn.Identity)
    assert isinstance(tiny_net.bn1, nn.BatchNorm2d)


def test_baselines_share_the_loop(tiny_net):
    for method in (fourier, pixels):
        result = method(Objective.channel(tiny_net, "layer1", [3, 4]), seed=0, lr=0.2, **{**FAST, "steps": 12})
        assert result.images.shape == (2, 3, 64, 64)
        assert (result.history[-3:].mean(0) > result.history[:3].mean(0)).all()


def test_result_round_trips_through_save_and_load(tiny_net, tmp_path):
    result = maco(Objective.neuron(tiny_net, "fc", [0, 1]), seed=0, **FAST)
    loaded = RenderResult.load(result.save(tmp_path / "r"))
    # images at 8-bit precision, losslessly: exactly the levels an 8-bit PNG of them holds
    assert torch.equal((loaded.images * 255).round(), (result.images.clamp(0, 1) * 255).round())
    # alphas as 8-bit square roots over their maximum: half a level of sqrt(alpha / max), and the maximum exact
    scale = result.alphas.amax((1, 2, 3), keepdim=True)
    assert ((loaded.alphas / scale).sqrt() - (result.alphas / scale).sqrt()).abs().max() <= 0.5 / 255 + 1e-6
    torch.testing.assert_close(loaded.alphas.amax((1, 2, 3)), scale.flatten())
    assert torch.equal(loaded.history, result.history)
    assert loaded.names == result.names and loaded.config == result.config
    again = RenderResult.load(loaded.save(tmp_path / "again"))  # stable once saved
    assert again.images.equal(loaded.images) and again.alphas.equal(loaded.alphas)
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert files == ["alpha_00.png", "alpha_01.png", "image_00.webp", "image_01.webp", "result.json", "tensors.npz"]
    single = maco(Objective.neuron(tiny_net, "fc", 0), seed=0, **FAST)
    RenderResult.load(single.save(tmp_path / "r"))  # a smaller result over a larger one leaves no stale image
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["alpha_00.png", "image_00.webp", "result.json",
                                                                  "tensors.npz"]


def test_result_saved_lossy_stays_close_and_smaller(tiny_net, tmp_path):
    result = maco(Objective.neuron(tiny_net, "fc", [0, 1]), seed=0, **FAST)
    lossless = RenderResult.load(result.save(tmp_path / "exact"))
    lossy = RenderResult.load(result.save(tmp_path / "lossy", quality=90))
    assert (lossy.images - lossless.images).abs().mean() < 0.03
    assert lossy.alphas.equal(lossless.alphas)
    assert (tmp_path / "lossy" / "image_00.webp").stat().st_size < (tmp_path / "exact" / "image_00.webp").stat().st_size
    with pytest.raises(ValueError, match="quality"):
        result.save(tmp_path / "bad", quality=0)


def test_result_saved_without_alphas_loads_with_none(tiny_net, tmp_path):
    result = maco(Objective.neuron(tiny_net, "fc", [0, 1]), seed=0, **FAST)
    result.save(tmp_path / "r")
    loaded = RenderResult.load(result.save(tmp_path / "r", alphas=False))  # over a result that had them
    assert loaded.alphas is None and not list((tmp_path / "r").glob("alpha_*"))
    assert torch.equal((loaded.images * 255).round(), (result.images.clamp(0, 1) * 255).round())
    with pytest.raises(ValueError, match="alphas=False"):
        loaded.save(tmp_path / "again")
    assert RenderResult.load(loaded.save(tmp_path / "again", alphas=False)).images.equal(loaded.images)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=63), "even integer"),
        (dict(spectrum=torch.ones(3, 32, 17)), r"shape \(3, 64, 33\).*resize_spectrum"),
        (dict(steps=0), "steps"),
        (dict(crop_size=(0.0, 0.1)), "crop_size"),
        (dict(device="cuda"), "model is on cpu"),
        (dict(phase_init="flat"), "phase_init"),
        (dict(max_batch=0), "max_batch"),
        (dict(lr=0.0), "`lr` of RenderSettings must be a finite number > 0"),
        (dict(noise=-0.1), "`noise` of RenderSettings must be a finite number >= 0"),
    ],
)
def test_bad_arguments_get_clear_errors(tiny_net, kwargs, message):
    with pytest.raises(ValueError, match=message):
        maco(Objective.neuron(tiny_net, "fc", 0), **{**FAST, **kwargs})


def test_non_finite_score_names_step_and_target(tiny_net):
    class Explode(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * (float("nan") if self.calls > 3 else 1.0)

    model = nn.Sequential(tiny_net, Explode())
    with pytest.raises(NonFiniteScoreError, match=r"target 0 \(neuron\(1, 0\)\).*step 3"):
        maco(Objective.neuron(model, 1, [0, 1]), seed=0, fold_bn=False, **FAST)


def test_objective_type_is_checked():
    with pytest.raises(TypeError, match="maco.Objective"):
        maco(lambda x: x.sum(), **FAST)


def test_default_spectrum_is_used_when_none_is_given(tiny_net):
    a = maco(Objective.neuron(tiny_net, "fc", 0), seed=0, **FAST)
    b = maco(Objective.neuron(tiny_net, "fc", 0), seed=0, spectrum=default_spectrum(64), **FAST)
    assert torch.equal(a.images, b.images)


@pytest.mark.gpu
def test_cuda_run_with_bf16_and_channels_last(tiny_net):
    model = tiny_net.cuda()
    result = maco(Objective.neuron(model, "fc", [0, 1]), seed=0, **FAST)
    assert result.images.device.type == "cpu" and torch.isfinite(result.images).all()
    assert (result.history[-3:].mean(0) > result.history[:3].mean(0)).all()


def test_keywords_override_the_settings_and_the_config_records_them(tiny_net):
    objective = Objective.neuron(tiny_net, "fc", [0, 1])
    settings = RenderSettings(steps=99, image_size=64, crops=4, seed=3)
    overridden = maco(objective, settings=settings, steps=FAST["steps"], input_size=32, progress=False)
    plain = maco(objective, seed=3, **FAST)
    assert torch.equal(overridden.images, plain.images)
    assert RenderSettings.from_dict({k: overridden.config[k] for k in settings.to_dict()}) == replace(settings, steps=8)
    assert overridden.config["input_size"] == 32 and overridden.config["objective"] == repr(objective)


def test_settings_of_another_method_are_refused(tiny_net):
    with pytest.raises(ValueError, match=r"`settings` of fourier must have method='fourier'.*maco.maco"):
        fourier(Objective.neuron(tiny_net, "fc", 0), settings=RenderSettings(), **FAST)


def test_an_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="stpes"):
        maco(None, stpes=3)


@pytest.mark.parametrize("method", ["maco", "fourier", "pixels"])
def test_render_with_every_part_given_explicitly_equals_the_defaults(tiny_net, method):
    objective = Objective.channel(tiny_net, "layer1", [3, 4])
    settings = RenderSettings(method=method, steps=4, image_size=64, crops=4, seed=7)
    default = render(objective, settings, input_size=32, progress=False)
    seeds = [7, 8]
    param = {
        "maco": lambda: MacoImage(default_spectrum(64), 2, generators=target_generators(seeds, 0)),
        "fourier": lambda: FourierImage(64, 64, 2, generators=target_generators(seeds, 0)),
        "pixels": lambda: PixelImage(64, 64, 2, generators=target_generators(seeds, 0)),
    }[method]()
    explicit = render(
        objective,
        settings,
        param=param,
        optimizer=lambda params: torch.optim.NAdam(params, lr=settings.lr),
        transforms=CropsAndNoise(settings, seeds, 32, "cpu"),
        input_size=32,
        progress=False,
    )
    assert torch.equal(explicit.images, default.images) and torch.equal(explicit.alphas, default.alphas)
    assert explicit.config == default.config


def test_custom_optimizer_and_transforms_are_used_and_recorded(tiny_net):
    seen = []

    def whole_canvas(canvas, step):
        seen.append(step)
        return nn.functional.interpolate(canvas, size=32, mode="bilinear", antialias=True)

    result = pixels(
        Objective.channel(tiny_net, "layer1", [3, 4]),
        seed=0,
        optimizer=lambda params: torch.optim.Adam(params, lr=0.1),
        transforms=whole_canvas,
        **{**FAST, "steps": 12},
    )
    assert seen == list(range(12))
    assert result.config["optimizer"] == "Adam" and "whole_canvas" in result.config["transforms"]
    assert (result.history[-3:].mean(0) > result.history[:3].mean(0)).all()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(transforms=lambda canvas, step: canvas[:1]), ValueError, r"`transforms` must return \(T \* K, 3, s, s\)"),
        (dict(param=PixelImage(32, 32, 2)), ValueError, r"makes 32x32 canvases but settings.image_size is 64"),
        (dict(param=PixelImage(64, 64, 1)), ValueError, r"T = objective.n_targets = 2; got shape \(1, 3, 64, 64\)"),
        (dict(param=lambda: torch.rand(2, 3, 64, 64)), TypeError, "`param` of render must be an nn.Module"),
        (dict(optimizer=torch.optim.SGD([torch.zeros(1)], lr=1)), TypeError, "`optimizer` of render must be a call"),
        (dict(settings={"steps": 2}), TypeError, "RenderSettings.from_dict"),
        (dict(spectrum=torch.ones(3, 64, 33), param=PixelImage(64, 64, 2)), ValueError, "`spectrum` of render"),
        (dict(spectrum=torch.ones(3, 64, 33), settings=RenderSettings(method="pixels")), ValueError, "method='pix"),
        (dict(input_size=0), ValueError, "`input_size` of render"),
    ],
)
def test_render_refuses_parts_that_do_not_fit(tiny_net, kwargs, error, message):
    settings = kwargs.pop("settings", RenderSettings(steps=2, image_size=64, crops=2, seed=0))
    with pytest.raises(error, match=message):
        render(Objective.neuron(tiny_net, "fc", [0, 1]), settings, **{"input_size": 32, "progress": False, **kwargs})
