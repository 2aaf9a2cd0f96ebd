"""Feature inversion on the demo model: the objective rises, and the cosine measure is exact."""
import torch

from pipelines.config import INVERSION_CROP_SIZE, VisualizationConfig
from pipelines.demo import DemoWorld
from pipelines.inversion import inversion_cosines, render_inversions
from pipelines.models import demo_bundle


def test_inversions_approach_their_references_and_cosines_are_exact():
    bundle = demo_bundle("a")
    images, _ = DemoWorld(image_size=64).sample(2, 2, seed=0)
    references = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    norm = dict(mean=bundle.mean, std=bundle.std)
    assert torch.allclose(inversion_cosines(bundle.model, bundle.layer, references, references,
                                            input_size=bundle.input_size, **norm), torch.ones(2), atol=1e-5)

    def reached(steps: int) -> torch.Tensor:
        config = VisualizationConfig(steps=steps, image_size=64, crops=4, crop_size=INVERSION_CROP_SIZE,
                                     input_size=bundle.input_size, seed=0)
        render = render_inversions(bundle.model, bundle.layer, references, config, **norm)
        assert render.images.shape == (2, 3, 64, 64)
        return inversion_cosines(bundle.model, bundle.layer, render.images, references,
                                 input_size=bundle.input_size, **norm)

    start, end = reached(1), reached(24)
    assert (end > start).all() and (end > 0.95).all(), (start, end)
