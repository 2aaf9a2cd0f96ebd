"""pipelines.demo models: the g/h split, the shipped weights and their held-out accuracy."""
import pytest
import torch

import pipelines.demo as demo
from pipelines.demo import DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, DemoNet, DemoWorld, load_demo_model

TEST_SEED = 20_000  # never used for training (training uses 1000 * (seed + 1) + epoch, held-out 10_000)


def _normalise(images):
    return (images - torch.tensor(DEMO_MEAN)[:, None, None]) / torch.tensor(DEMO_STD)[:, None, None]


@pytest.fixture(scope="module")
def held_out():
    images, labels, _ = DemoWorld(image_size=DEMO_INPUT_SIZE).dataset(40, seed=TEST_SEED)
    return _normalise(images), labels


def test_demo_exports():
    for name in demo.__all__:
        assert hasattr(demo, name), name
    assert len(demo.CLASS_NAMES) == 6 and all(isinstance(c, str) for c in demo.CLASS_NAMES)


def test_demo_net_g_h_split():
    torch.manual_seed(0)
    model = DemoNet().eval()
    x = torch.randn(2, 3, DEMO_INPUT_SIZE, DEMO_INPUT_SIZE)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, DEMO_INPUT_SIZE // 16, DEMO_INPUT_SIZE // 16)
        assert (features >= 0).all()
        assert torch.allclose(model.forward_head(features), model(x))
    assert isinstance(model.avgpool, torch.nn.AdaptiveAvgPool2d) and isinstance(model.fc, torch.nn.Linear)
    assert all(hasattr(model, f"layer{i}") for i in range(1, 5))
    assert sum(p.numel() for p in model.parameters()) < 500_000


@pytest.mark.parametrize("which", ["a", "b"])
def test_demo_shipped_model_accuracy(held_out, which):
    images, labels = held_out
    model = load_demo_model(which)
    assert not model.training
    with torch.no_grad():
        features = model.forward_features(images)
        logits = model(images)
    assert (features >= 0).all()
    assert torch.allclose(model.forward_head(features), logits, atol=1e-5)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95, f"model {which}: held-out accuracy {accuracy:.3f}"


def test_demo_models_differ():
    a, b = load_demo_model("a"), load_demo_model("b")
    assert not torch.equal(a.layer1[0].weight, b.layer1[0].weight)
    assert not torch.equal(a.fc.weight, b.fc.weight)


def test_demo_weight_files_are_small():
    from importlib.resources import files
    for name in ("demo_a.pt", "demo_b.pt"):
        resource = files("pipelines.demo").joinpath("weights", name)
        assert resource.is_file() and len(resource.read_bytes()) < 3_000_000


def test_demo_bad_arguments():
    with pytest.raises(ValueError, match="which"):
        load_demo_model("c")
    with pytest.raises(ValueError, match="width"):
        DemoNet(width=0)
    with pytest.raises(ValueError, match="x"):
        DemoNet()(torch.zeros(3, 32, 32))


def test_demo_training_is_deterministic_with_part_targets():
    from pipelines.demo.train import _draw_training, train_one

    world = DemoWorld(image_size=64)
    images, labels, shares, weights = _draw_training(world, 3, seed=5, zoom=0.5)
    assert images.shape == (18, 3, 64, 64) and labels.tolist() == [c for c in range(6) for _ in range(3)]
    assert shares.shape == (18, len(demo.PART_NAMES) + 1, 4, 4)
    assert torch.allclose(shares.sum(1), torch.ones(18, 4, 4), atol=1e-5) and (shares >= 0).all()
    assert set(weights.tolist()) <= {0.0, 1.0} and weights.sum() >= 9
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        a = train_one(3, steps=2, batch=6, epoch_per_class=3, world=world)
        b = train_one(3, steps=2, batch=6, epoch_per_class=3, world=world)
    finally:
        torch.use_deterministic_algorithms(before)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training
