"""User objectives built with Objective.from_function: same numbers, composition and errors as the built-ins."""

import pytest
import torch

from maco import Objective, forward_to_layers, maco

from .maco_budget import FAST


def two_channels(acts, target):
    """Channel 1 for target 0 and channel 2 for target 1, as Objective.channel(model, "layer1", [1, 2])."""
    channels = torch.tensor([1, 2], device=target.device)[target]
    return acts["layer1"].flatten(2).mean(2).gather(1, channels[:, None])[:, 0]


def channel_means(acts, target):
    return acts["layer1"].flatten(2).mean(2)  # (N, C): one score per channel, not per sample


@pytest.mark.parametrize("max_batch", [None, 4], ids=["one_pass", "chunked"])
def test_a_user_objective_renders_like_the_builtin_it_reimplements(tiny_net, max_batch):
    custom = Objective.from_function(tiny_net, "layer1", two_channels, n_targets=2)
    builtin = Objective.channel(tiny_net, "layer1", [1, 2])
    ours = maco(custom, seed=0, max_batch=max_batch, **FAST)
    theirs = maco(builtin, seed=0, max_batch=max_batch, **FAST)
    torch.testing.assert_close(ours.history, theirs.history)
    torch.testing.assert_close(ours.images, theirs.images)
    torch.testing.assert_close(ours.alphas, theirs.alphas)
    assert ours.names == ["two_channels(layer1)[0]", "two_channels(layer1)[1]"]
    expected = "Objective.from_function(model, ['layer1'], two_channels, n_targets=2, name='two_channels(layer1)')"
    assert repr(custom) == expected


def test_a_user_objective_score_rises(tiny_net):
    objective = Objective.from_function(tiny_net, "fc", lambda acts, target: acts["fc"][:, 3], name="logit 3")
    history = maco(objective, seed=0, **{**FAST, "steps": 12}).history
    assert history.shape == (12, 1) and objective.names == ["logit 3"]
    assert history[-3:].mean() > history[:3].mean(), history


def test_a_user_objective_composes_with_builtins(tiny_net):
    custom = Objective.from_function(tiny_net, "layer1", two_channels, n_targets=2)
    layer = Objective.layer(tiny_net, "layer1")
    builtin = Objective.channel(tiny_net, "layer1", [1, 2])
    acts = forward_to_layers(tiny_net, torch.rand(6, 3, 32, 32), ("layer1", "fc"))
    combined = 2.0 * custom - 0.5 * layer
    assert combined.n_targets == 2 and combined.layers == ("layer1",)
    torch.testing.assert_close(combined(acts, 2), (2.0 * builtin - 0.5 * layer)(acts, 2))
    assert combined.names[1] == "2 * two_channels(layer1)[1] + -1 * 0.5 * layer(layer1)"
    one_target = Objective.from_function(tiny_net, "fc", lambda acts, target: acts["fc"][:, 0])  # broadcast to both
    mixed = builtin + one_target
    assert mixed.layers == ("layer1", "fc")
    torch.testing.assert_close(mixed(acts, 2), builtin(acts, 2) + Objective.neuron(tiny_net, "fc", 0)(acts, 2))


def test_each_sample_gets_its_target_and_targets_stay_independent(tiny_net):
    seen = []

    def first_unit(acts, target):
        seen.append(target)
        return acts[-1][:, 0]

    objective = Objective.from_function(tiny_net, -1, first_unit, n_targets=2)  # -1: the last child, "fc"
    x = torch.rand(6, 3, 32, 32, requires_grad=True)
    scores = objective(forward_to_layers(tiny_net, x, objective.layers), 2)
    assert objective.layers == ("fc",) and seen[0].tolist() == [0, 0, 0, 1, 1, 1]
    (grad,) = torch.autograd.grad(scores[0], x)
    assert grad[:3].abs().sum() > 0 and grad[3:].abs().sum() == 0


def test_a_bad_return_shape_names_the_function(tiny_net):
    objective = Objective.from_function(tiny_net, "layer1", channel_means)
    message = r"'channel_means' of Objective.from_function returned shape \(4, 16\).*shape \(4,\) here"
    with pytest.raises(ValueError, match=message):
        maco(objective, seed=0, **FAST)


@pytest.mark.parametrize(
    "fn, error, message",
    [
        (lambda acts, target: 1.0, TypeError, "must return a torch.Tensor of scores; got float"),
        (lambda acts, target: acts["fc"][:, 0].detach(), ValueError, r"detached from the activations.*no \.detach\(\)"),
        (lambda acts, target: acts["layer1"].mean((1, 2, 3)), KeyError, r"reads layer 'layer1'.*\['fc'\]"),
    ],
    ids=["not_a_tensor", "detached", "undeclared_layer"],
)
def test_bad_functions_are_explained(tiny_net, fn, error, message):
    objective = Objective.from_function(tiny_net, "fc", fn)
    acts = forward_to_layers(tiny_net, torch.rand(2, 3, 32, 32, requires_grad=True), ("fc", "layer1"))
    with pytest.raises(error, match=message):
        objective(acts, 1)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(layers=[]), TypeError, "`layers` of Objective.from_function must be"),
        (dict(layers=None), TypeError, "`layers` of Objective.from_function must be"),
        (dict(layers="layer_1"), ValueError, "Close matches: layer1"),
        (dict(fn="two_channels"), TypeError, "`fn` of Objective.from_function must be callable"),
        (dict(n_targets=0), ValueError, "`n_targets` of Objective.from_function must be a positive integer"),
        (dict(n_targets=True), ValueError, "`n_targets` of Objective.from_function must be a positive integer"),
        (dict(name=3), TypeError, "`name` of Objective.from_function must be a str"),
        (dict(model="resnet"), TypeError, "`model` of Objective.from_function must be a torch.nn.Module"),
    ],
)
def test_from_function_checks_its_arguments(tiny_net, kwargs, error, message):
    arguments = dict(model=tiny_net, layers="layer1", fn=two_channels) | kwargs
    with pytest.raises(error, match=message):
        Objective.from_function(arguments.pop("model"), arguments.pop("layers"), arguments.pop("fn"), **arguments)


def test_user_objectives_compare_by_function_and_settings(tiny_net):
    a = Objective.from_function(tiny_net, "layer1", two_channels, n_targets=2)
    same = Objective.from_function(tiny_net, ["layer1"], two_channels, n_targets=2)
    assert a == same and hash(a) == hash(same)
    assert a != Objective.from_function(tiny_net, "layer1", channel_means, n_targets=2)
    assert a != Objective.from_function(tiny_net, "layer1", two_channels, n_targets=2, name="pair")
    assert len({a, same, a + Objective.layer(tiny_net, "layer1"), same + Objective.layer(tiny_net, "layer1")}) == 2
