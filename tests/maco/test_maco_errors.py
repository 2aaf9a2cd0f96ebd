"""Wrong inputs get a message that names the argument and the fix, not a traceback from inside torch."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from maco import NonFiniteScoreError, Objective, forward_to_layers, maco
from maco.model import check_finite_weights

from .maco_budget import FAST


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: Objective.neuron(m, "fc", 7), r"Objective.neuron: neuron 7 of layer 'fc' is out of range: "
         r"the layer has 5 units \(0-4\)\."),
        (lambda m: Objective.neuron(m, -1, [0, 5]), r"neuron 5 of layer 'fc' .* 5 units \(0-4\)"),
        (lambda m: Objective.channel(m, "conv1", 8), r"Objective.channel: channel 8 of layer 'conv1' is out of range: "
         r"the layer has 8 channels \(0-7\)\."),
        (lambda m: Objective.channel(m, "bn1", 9), r"channel 9 of layer 'bn1' .* 8 channels \(0-7\)"),
        (lambda m: Objective.neuron(m, "fc", -1), r"neuron -1 of layer 'fc' .* \(0-4\); negative indices"),
        (lambda m: Objective.channel(m, "layer1", -2), r"channel -2 of layer 'layer1' .* start at 0; negative"),
    ],
    ids=["linear", "linear_by_index", "conv", "batchnorm", "negative", "negative_width_unknown"],
)
def test_index_out_of_a_declared_range_fails_at_construction(tiny_net, make, message):
    with pytest.raises(ValueError, match=message):
        make(tiny_net)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: Objective.channel(m, "layer1", 16), r"channel 16 of layer 'layer1' .* 16 channels \(0-15\)"),
        (lambda m: Objective.neuron(m, "avgpool", [1, 99]), r"neuron 99 of layer 'avgpool' .* 16 units \(0-15\)"),
        (lambda m: Objective.neuron(m, "relu", 8), r"neuron 8 of layer 'relu' .* 8 units \(0-7\)"),
    ],
    ids=["sequential", "pool", "relu"],
)
def test_index_past_a_layer_known_only_at_run_time_fails_at_the_first_step(tiny_net, make, message):
    objective = make(tiny_net)  # the width of these layers shows only in their output
    with pytest.raises(ValueError, match=message):
        maco(objective, seed=0, **FAST)


def test_neuron_position_outside_the_maps(tiny_net):
    objective = Objective.neuron(tiny_net, "layer1", 0, position=(40, 0))
    acts = forward_to_layers(tiny_net, torch.rand(2, 3, 32, 32), objective.layers)
    with pytest.raises(ValueError, match=r"`position` \(40, 0\) .* maps are 16x16"):
        objective(acts, 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: Objective.neuron(m, "fc", 1),
        lambda m: Objective.channel(m, "fc", 1),
        lambda m: Objective.layer(m, "fc"),
        lambda m: Objective.direction(m, "fc", torch.rand(5)),
        lambda m: Objective.inversion(m, "fc", torch.rand(5)),
    ],
    ids=["neuron", "channel", "layer", "direction", "inversion"],
)
@pytest.mark.parametrize("model", [None, "resnet50", torchvision.models.resnet50], ids=["none", "str", "constructor"])
def test_factories_name_a_model_that_is_not_a_module(make, model):
    with pytest.raises(TypeError, match=r"`model` of Objective\.\w+ must be a torch.nn.Module; got"):
        make(model)


class TupleOut(nn.Module):
    """A detector-like model: the forward returns several outputs."""

    def __init__(self, body: nn.Module, as_dict: bool) -> None:
        super().__init__()
        self.body = body
        self.as_dict = as_dict

    def forward(self, x: torch.Tensor):
        logits = self.body(x)
        return {"logits": logits, "n": 3} if self.as_dict else (logits, x.mean())


@pytest.mark.parametrize("as_dict", [False, True], ids=["tuple", "dict"])
def test_model_whose_forward_returns_a_tuple_or_dict(tiny_net, as_dict):
    model = TupleOut(tiny_net, as_dict)
    result = maco(Objective.neuron(model, "body.fc", 1), seed=0, **FAST)
    plain = maco(Objective.neuron(tiny_net, "fc", 1), seed=0, **FAST)
    torch.testing.assert_close(result.images, plain.images)


def test_layer_whose_output_is_a_tuple_gets_a_clear_error(tiny_net):
    model = nn.Sequential(TupleOut(tiny_net, as_dict=False))
    with pytest.raises(ValueError, match=r"layer '0' of Sequential outputs a tuple, not a tensor.*list_layers"):
        maco(Objective.neuron(model, "0", 1), seed=0, **FAST)


@pytest.mark.parametrize("fold_bn", [True, False])
@pytest.mark.parametrize("where", ["fc.weight", "bn1.running_var"])
def test_nan_weights_are_named(tiny_net, fold_bn, where):
    with torch.no_grad():
        (tiny_net.get_parameter if where.endswith("weight") else tiny_net.get_buffer)(where)[0] = float("nan")
    with pytest.raises(ValueError, match=rf"'{where}' of TinyNet holds NaN or inf values.*check the model's weights"):
        maco(Objective.neuron(tiny_net, "fc", 1), fold_bn=fold_bn, seed=0, **FAST)


def test_finite_weights_whose_sum_overflows_are_accepted():
    """The quick check sums each tensor; a sum that overflows must not pass for a NaN or inf weight."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(3e38)  # finite, but its sum is inf in float32
    check_finite_weights(model)
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(ValueError, match="parameter 'bias' of Linear holds NaN or inf values"):
        check_finite_weights(model)


class Overflow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1e38 * 1e38


def test_nan_outputs_from_finite_weights_are_named(tiny_net):
    model = nn.Sequential(tiny_net, Overflow())
    with pytest.raises(ValueError, match="Sequential produced NaN or inf outputs.*check its weights"):
        maco(Objective.neuron(model, "0.fc", 1), seed=0, **FAST)


class NanGradient(nn.Module):
    """Identity forward whose backward is NaN (0 * d sqrt(0))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0 * torch.sqrt(x - x)


def test_non_finite_gradient_with_a_finite_score_is_caught(tiny_net):
    model = nn.Sequential(NanGradient(), tiny_net)
    with pytest.raises(NonFiniteScoreError, match=r"gradient of target 0 \(neuron\(1.fc, 1\)\).*step 0"):
        maco(Objective.neuron(model, "1.fc", 1), seed=0, fold_bn=False, **{**FAST, "steps": 1})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_other_float_dtypes_run_as_a_float32_copy_on_the_cpu(tiny_net, dtype):
    model = copy.deepcopy(tiny_net).to(dtype)
    result = maco(Objective.neuron(model, "fc", 1), seed=0, **FAST)
    expected = maco(Objective.neuron(copy.deepcopy(model).float(), "fc", 1), seed=0, **FAST)
    assert torch.isfinite(result.images).all()
    torch.testing.assert_close(result.images, expected.images)
    assert all(p.dtype == dtype for p in model.parameters())  # the caller's model is untouched


def test_cli_visualize_reports_an_out_of_range_neuron(monkeypatch, tmp_path, capsys):
    from pipelines.cli import main

    monkeypatch.setattr(torchvision.models, "resnet50", lambda **kwargs: ResNet(Bottleneck, [1, 1, 1, 1]))
    with pytest.raises(SystemExit) as exit_info:
        main(["--quiet", "visualize", "--layer", "fc", "--neuron", "5000", "-o", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    assert "neuron 5000 of layer 'fc' is out of range: the layer has 1000 units (0-999)" in capsys.readouterr().err
