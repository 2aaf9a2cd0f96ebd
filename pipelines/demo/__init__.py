"""The embedded demo: a procedural part-based image world, two small CNNs and a tiny ViT trained on it.

>>> from pipelines.demo import DemoWorld, load_demo_model, CLASS_NAMES
>>> images, labels, masks = DemoWorld().dataset(4, seed=123)      # (24, 3, 128, 128) in [0, 1]
>>> model = load_demo_model("a")                                  # eval mode, shipped weights
>>> mean = torch.tensor(DEMO_MEAN)[:, None, None]; std = torch.tensor(DEMO_STD)[:, None, None]  # doctest: +SKIP
>>> logits = model((images - mean) / std)                         # doctest: +SKIP

The weights in ``weights/`` were made by ``python -m pipelines.demo.train``
(the CNNs ``a`` and ``b``) and ``python -m pipelines.demo.train_vit`` (the
ViT, ``load_demo_model("vit")``); see those modules for seeds, accuracy and time. The quality
experiment on this world is :func:`pipelines.demo.experiment.evaluate_demo`,
imported on its own since it needs ``maco`` and ``concepts``.
"""
from .load import load_demo_model
from .model import DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, DemoNet
from .parts import CLASS_NAMES, CLASS_PARTS, DISTINCTIVE_PARTS, PART_COLOURS, PART_NAMES, SHARED_PARTS
from .vit import DemoViT
from .world import DemoWorld

__all__ = [
    "CLASS_NAMES", "CLASS_PARTS", "DEMO_INPUT_SIZE", "DEMO_MEAN", "DEMO_STD", "DISTINCTIVE_PARTS", "DemoNet",
    "DemoViT", "DemoWorld", "PART_COLOURS", "PART_NAMES", "SHARED_PARTS", "load_demo_model",
]
