import copy

import pytest
import torch

from maco import Objective, forward_to_layers, maco
from maco.hooks import resolve_layer

from .maco_budget import FAST


def make_objectives(model):
    return {
        "neuron": Objective.neuron(model, "fc", [0, 1]),
        "neuron_conv": Objective.neuron(model, "layer1", 3),
        "channel": Objective.channel(model, "layer1.2", [1, 2]),
        "layer": Objective.layer(model, "layer1"),
        "direction_pooled": Objective.direction(model, -2, torch.rand(2, 16)),
        "direction_conv": Objective.direction(model, "layer1", torch.rand(16)),
        "inversion": Objective.inversion(model, "avgpool", torch.rand(2, 16)),
        "caricature": Objective.inversion(model, "avgpool", torch.rand(2, 16), cossim_pow=2.0),
        "sum": Objective.channel(model, "layer1", [1, 2]) + 0.5 * Objective.layer(model, "layer1"),
        "difference": Objective.neuron(model, "fc", 1) - Objective.neuron(model, "fc", 2),
    }


OBJECTIVE_NAMES = [
    "neuron",
    "neuron_conv",
    "channel",
    "layer",
    "direction_pooled",
    "direction_conv",
    "inversion",
    "caricature",
    "sum",
    "difference",
]


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_every_objective_returns_one_score_per_target_and_rises(tiny_net, name):
    objective = make_objectives(tiny_net)[name]
    x = torch.rand(objective.n_targets * 3, 3, 32, 32)
    scores = objective(forward_to_layers(tiny_net, x, objective.layers), objective.n_targets)
    assert scores.shape == (objective.n_targets,)
    result = maco(objective, seed=0, **{**FAST, "steps": 12})
    history = result.history
    assert history.shape == (12, objective.n_targets)
    assert (history[-3:].mean(0) > history[:3].mean(0)).all(), history


def test_scores_of_targets_are_independent(tiny_net):
    objective = Objective.neuron(tiny_net, "fc", [0, 1])
    x = torch.rand(6, 3, 32, 32, requires_grad=True)
    scores = objective(forward_to_layers(tiny_net, x, objective.layers), 2)
    (grad,) = torch.autograd.grad(scores[0], x)
    assert grad[:3].abs().sum() > 0 and grad[3:].abs().sum() == 0


def test_composition_never_mutates_its_operands(tiny_net):
    a = Objective.neuron(tiny_net, "fc", 1)
    b = Objective.channel(tiny_net, "layer1", 2)
    before = (repr(a), repr(b))
    combined = 2.0 * a - b / 4
    assert (repr(a), repr(b)) == before
    x = torch.rand(2, 3, 32, 32)
    acts = forward_to_layers(tiny_net, x, combined.layers)
    expected = 2.0 * a(acts, 1) - 0.25 * b(acts, 1)
    torch.testing.assert_close(combined(acts, 1), expected)
    assert "Objective.neuron(model, 'fc', [1])" in repr(combined)


def test_objectives_refuse_non_numbers(tiny_net):
    a = Objective.neuron(tiny_net, "fc", 1)
    with pytest.raises(TypeError, match="real number"):
        a * a
    with pytest.raises(TypeError, match="str"):
        a * "2"


def test_sum_needs_compatible_target_counts(tiny_net):
    with pytest.raises(ValueError, match="same number of targets"):
        Objective.neuron(tiny_net, "fc", [0, 1]) + Objective.neuron(tiny_net, "fc", [0, 1, 2])


def test_direction_checks_the_vector_width(tiny_net):
    objective = Objective.direction(tiny_net, "avgpool", torch.rand(2, 7))
    acts = forward_to_layers(tiny_net, torch.rand(2, 3, 32, 32), objective.layers)
    with pytest.raises(ValueError, match="7 channels"):
        objective(acts, 2)


def test_layers_by_name_and_index(tiny_net):
    assert resolve_layer(tiny_net, -1) == "fc"
    assert resolve_layer(tiny_net, -2) == "avgpool"
    assert resolve_layer(tiny_net, "layer1.0") == "layer1.0"


def test_unknown_layer_lists_close_matches(tiny_net):
    with pytest.raises(ValueError, match="Close matches: layer1"):
        Objective.channel(tiny_net, "layer_1", 0)


def test_layer_index_out_of_range(tiny_net):
    with pytest.raises(ValueError, match="out of range.*6 top-level children"):
        Objective.neuron(tiny_net, 6, 0)


def test_forward_stops_after_the_deepest_needed_layer(tiny_net):
    called = []
    tiny_net.fc.register_forward_hook(lambda *args: called.append("fc"))
    acts = forward_to_layers(tiny_net, torch.rand(1, 3, 32, 32), ["layer1"])
    assert set(acts) == {"layer1"} and called == []


@pytest.mark.parametrize("make", [Objective.direction, Objective.inversion], ids=["direction", "inversion"])
def test_objectives_with_tensors_compare_and_hash_by_value(tiny_net, make):
    vectors = torch.rand(2, 16)
    a = make(tiny_net, "avgpool", vectors)
    same = make(tiny_net, "avgpool", vectors.clone())  # another tensor, equal content
    other = make(tiny_net, "avgpool", torch.rand(2, 16))
    reshaped = make(tiny_net, "avgpool", vectors.reshape(4, 8))  # the same bytes in another shape
    assert a == same and hash(a) == hash(same)
    assert a != other and a != reshaped
    assert len({a, same, other}) == 2


def test_an_objective_keeps_its_own_copy_of_the_tensors(tiny_net):
    vectors = torch.rand(2, 16)
    objective = Objective.direction(tiny_net, "avgpool", vectors)
    before = hash(objective)
    vectors.mul_(-1)  # the caller edits its tensor afterwards
    assert hash(objective) == before
    assert objective == Objective.direction(tiny_net, "avgpool", -vectors)
    assert not torch.equal(objective.vectors, vectors)


def test_equality_follows_the_model_the_settings_and_the_content(tiny_net):
    other_net = copy.deepcopy(tiny_net)
    vectors = torch.rand(2, 16)
    assert Objective.channel(tiny_net, "layer1", 3) != Objective.channel(other_net, "layer1", 3)
    assert Objective.direction(tiny_net, "avgpool", vectors) != Objective.direction(other_net, "avgpool", vectors)
    assert Objective.direction(tiny_net, "avgpool", vectors) != Objective.direction(
        tiny_net, "avgpool", vectors, cossim_pow=1.0
    )
    assert Objective.direction(tiny_net, "avgpool", torch.zeros(16)) == Objective.direction(
        tiny_net, "avgpool", -torch.zeros(16)
    )


def test_composed_objectives_compare_and_hash_by_value(tiny_net):
    v, w = torch.rand(16), torch.rand(16)
    layer = Objective.layer(tiny_net, "layer1")

    def compose(vector):
        return 2.0 * Objective.direction(tiny_net, "avgpool", vector) - 0.5 * layer

    a, same, other = compose(v), compose(v.clone()), compose(w)
    assert a == same and hash(a) == hash(same)
    assert a != other and len({a, same, other}) == 2
    assert -Objective.direction(tiny_net, "avgpool", v) != -Objective.direction(tiny_net, "avgpool", w)
    assert 2.0 * Objective.direction(tiny_net, "avgpool", v) != 3.0 * Objective.direction(tiny_net, "avgpool", v)
