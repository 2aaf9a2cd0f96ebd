"""MaCo feature visualization for any PyTorch model.

>>> from maco import Objective, maco, plot_maco
>>> image, alpha = maco(Objective.neuron(model, "fc", 1))            # doctest: +SKIP
>>> images, alphas = maco(Objective.direction(model, "avgpool", W))  # doctest: +SKIP
>>> result = render(objective, RenderSettings(method="fourier", steps=64))  # doctest: +SKIP
"""

from .hooks import capture, forward_to_layers, list_layers, resolve_layer
from .methods import fourier, maco, pixels
from .model import fold_batchnorm, frozen
from .objectives import Channel, Direction, Inversion, Layer, Neuron, Objective, Scaled, Sum
from .param import COLOR_CORRELATION, FourierImage, MacoImage, PixelImage
from .plot import alpha_to_unit, blend_alpha, plot_maco
from .render import IMAGENET_MEAN, IMAGENET_STD, NonFiniteScoreError, render, render_step
from .result import RenderResult
from .settings import RenderSettings
from .spectrum import compute_spectrum, default_spectrum, load_spectrum, resize_spectrum, save_spectrum
from .transforms import CropsAndNoise, add_uniform_noise, crop_and_resize, sample_crop_boxes

__all__ = [
    "COLOR_CORRELATION",
    "Channel",
    "CropsAndNoise",
    "Direction",
    "FourierImage",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Inversion",
    "Layer",
    "MacoImage",
    "Neuron",
    "NonFiniteScoreError",
    "Objective",
    "PixelImage",
    "RenderResult",
    "RenderSettings",
    "Scaled",
    "Sum",
    "add_uniform_noise",
    "alpha_to_unit",
    "blend_alpha",
    "capture",
    "compute_spectrum",
    "crop_and_resize",
    "default_spectrum",
    "fold_batchnorm",
    "forward_to_layers",
    "fourier",
    "frozen",
    "list_layers",
    "load_spectrum",
    "maco",
    "pixels",
    "plot_maco",
    "render",
    "render_step",
    "resize_spectrum",
    "resolve_layer",
    "sample_crop_boxes",
    "save_spectrum",
]
