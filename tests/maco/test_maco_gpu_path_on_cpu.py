"""The render loop's CUDA path (bf16 autocast, channels_last, folded BatchNorm), run on the CPU.

``RenderSettings(amp=True, channels_last=True)`` asks for what a CUDA run does by default, on any device. The
comparisons use lr 0.1: NAdam's first step moves every phase by about ``lr`` whatever the size of its gradient, so
at the paper's lr 1.0 a bf16 rounding that flips the sign of a near-zero gradient moves that phase by a whole
radian, and the images would compare Adam's sign choices rather than the numerics.
"""

import pytest
import torch
from torch import nn

from maco import Objective, RenderSettings, fourier, maco, pixels, render

from .maco_budget import FAST

GPU_PATH = dict(amp=True, channels_last=True)
# bf16 keeps 8 bits of mantissa (0.4% per rounding): scores within 1%, images (in [0, 1]) within 0.01 on average
# and 0.1 at worst after 8 steps; measured on TinyNet: 0.5%, 0.006 and 0.06.
SCORE_RTOL, IMAGE_MEAN_ATOL, IMAGE_MAX_ATOL, ALPHA_MIN_CORRELATION = 1e-2, 1e-2, 0.1, 0.99

OBJECTIVES = {
    "neuron": lambda model: Objective.neuron(model, "fc", [0, 1, 2]),
    "channel": lambda model: Objective.channel(model, "layer1", [3, 4]),
    "direction": lambda model: Objective.direction(
        model, "avgpool", torch.rand(3, 16, generator=torch.Generator().manual_seed(0))
    ),
}


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def assert_close_to_float32(fp32, bf16) -> None:
    relative = (bf16.history - fp32.history).abs() / fp32.history.abs().clamp_min(1e-3)
    assert relative.max() < SCORE_RTOL
    difference = (bf16.images - fp32.images).abs()
    assert difference.mean() < IMAGE_MEAN_ATOL and difference.max() < IMAGE_MAX_ATOL
    for t in range(len(fp32.alphas)):
        assert correlation(fp32.alphas[t], bf16.alphas[t]) > ALPHA_MIN_CORRELATION


@pytest.mark.parametrize("name", OBJECTIVES)
def test_bf16_channels_last_folded_images_and_alphas_match_float32(tiny_net, name):
    objective = OBJECTIVES[name](tiny_net)
    fp32 = maco(objective, seed=0, lr=0.1, **FAST)
    bf16 = maco(objective, seed=0, lr=0.1, **GPU_PATH, **FAST)
    assert (fp32.config["amp"], bf16.config["amp"], bf16.config["channels_last"]) == (None, True, True)
    assert_close_to_float32(fp32, bf16)


@pytest.mark.parametrize("method", [fourier, pixels])
def test_the_baselines_take_the_gpu_path_too(tiny_net, method):
    objective = OBJECTIVES["channel"](tiny_net)
    assert_close_to_float32(method(objective, seed=0, **FAST), method(objective, seed=0, **GPU_PATH, **FAST))


@pytest.mark.parametrize("name", OBJECTIVES)
def test_scores_rise_on_the_gpu_path_at_the_paper_lr(tiny_net, name):
    result = maco(OBJECTIVES[name](tiny_net), seed=0, **GPU_PATH, **FAST)
    assert torch.isfinite(result.images).all() and torch.isfinite(result.alphas).all()
    assert (result.history[-3:].mean(0) > result.history[:3].mean(0)).all()


def test_chunked_bf16_steps_match_the_whole_batch(tiny_net):
    objective = OBJECTIVES["neuron"](tiny_net)
    whole = maco(objective, seed=1, lr=0.1, **GPU_PATH, **FAST)
    chunked = maco(objective, seed=1, lr=0.1, max_batch=6, **GPU_PATH, **FAST)  # 12 crops in chunks of 6
    # Chunks add their canvas gradients in another order (1e-10 apart; test_maco_render checks float32 closely);
    # NAdam's eps turns that into ~1e-7 on the canvas, which now and then flips one bf16 rounding of an input.
    # Seeds 0-79, roi_align crops: 6 flips; matrix-product crops: 3 (seed 1 among them), at worst 1.6x the former
    # atol 1e-4 + rtol 1e-3 on scores, images 0.019 (max) and 8e-4 (mean) apart. So: one bf16 rounding (2^-8)
    # on scores, a flip's size on images.
    torch.testing.assert_close(chunked.history, whole.history, atol=1e-4, rtol=4e-3)
    difference = (chunked.images - whole.images).abs()
    assert difference.max() < 0.05 and difference.mean() < 2e-3


def test_channels_last_alone_keeps_float32_results(tiny_net):
    objective = OBJECTIVES["channel"](tiny_net)
    plain = maco(objective, seed=0, lr=0.1, **FAST)
    channels_last = maco(objective, seed=0, lr=0.1, channels_last=True, **FAST)
    torch.testing.assert_close(channels_last.history, plain.history, atol=1e-5, rtol=1e-5)
    assert (channels_last.images - plain.images).abs().max() < 1e-4


def forward_events(model: nn.Module) -> list:
    """What the first convolution, and its BatchNorm, see in every forward pass (hooks travel into model copies)."""
    events: list = []

    def conv_hook(module: nn.Module, inputs: tuple) -> None:
        (x,) = inputs
        events.append(
            dict(
                autocast=torch.is_autocast_enabled(x.device.type),
                input_channels_last=x.is_contiguous(memory_format=torch.channels_last),
                weight_channels_last=module.weight.is_contiguous(memory_format=torch.channels_last),
            )
        )

    model.conv1.register_forward_pre_hook(conv_hook)
    model.bn1.register_forward_pre_hook(lambda module, inputs: events.append("batchnorm"))
    return events


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, dict(autocast=False, input_channels_last=False, weight_channels_last=False)),  # None: CUDA only
        (GPU_PATH, dict(autocast=True, input_channels_last=True, weight_channels_last=True)),
        (dict(amp=True), dict(autocast=True, input_channels_last=False, weight_channels_last=False)),
    ],
)
def test_the_requested_options_reach_every_forward_pass(tiny_net, options, expected):
    events = forward_events(tiny_net)
    settings = RenderSettings(steps=3, image_size=64, crops=4, seed=0, **options)
    render(Objective.neuron(tiny_net, "fc", [0, 1]), settings, input_size=32, progress=False)
    assert "batchnorm" in events  # the probe passes of BatchNorm folding ran the original model...
    assert events[-3:] == [expected] * 3  # ...and the 3 steps a folded copy, no BatchNorm left
    assert isinstance(tiny_net.bn1, nn.BatchNorm2d) and tiny_net.conv1.weight.is_contiguous()  # caller's model
