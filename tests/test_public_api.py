import importlib

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from maco import blend_alpha, plot_maco  # noqa: E402


@pytest.mark.parametrize("package", ["maco", "concepts", "pipelines"])
def test_every_public_name_imports(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_blend_alpha_gives_rgba_in_unit_range():
    rgba = blend_alpha(torch.rand(3, 20, 20), torch.rand(1, 20, 20))
    assert rgba.shape == (20, 20, 4) and rgba.min() >= 0 and rgba.max() <= 1
    assert np.isclose(rgba[..., 3].max(), 1.0)


def test_plot_maco_draws_on_axes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plot_maco(torch.rand(3, 8, 8), torch.rand(1, 8, 8), ax=ax)
    assert len(ax.images) == 1
    plt.close(fig)
