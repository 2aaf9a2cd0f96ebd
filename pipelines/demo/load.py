"""Loading the shipped demo weights (package data ``pipelines/demo/weights/demo_{a,b,vit}.pt``)."""
from __future__ import annotations

import logging
from importlib.resources import as_file, files

import torch

from .model import DemoNet
from .parts import CLASS_NAMES
from .vit import DemoViT

__all__ = ["WEIGHT_FILES", "load_demo_model"]

_logger = logging.getLogger(__name__)

WEIGHT_FILES: dict[str, str] = {"a": "demo_a.pt", "b": "demo_b.pt", "vit": "demo_vit.pt"}


def load_demo_model(which: str = "a") -> DemoNet | DemoViT:
    """One of the shipped demo networks, in eval mode, on the CPU.

    Parameters
    ----------
    which : {"a", "b", "vit"}
        ``"a"`` (training seed 0) is the CNN to explain; ``"b"`` (seed 1) is
        the independently trained CNN used for transferability scores;
        ``"vit"`` is the tiny transformer (:class:`~pipelines.demo.vit.DemoViT`,
        made by ``python -m pipelines.demo.train_vit``).

    Returns
    -------
    DemoNet or DemoViT
        ``DemoNet(num_classes=len(CLASS_NAMES))`` (``"a"``, ``"b"``) or
        ``DemoViT(num_classes=len(CLASS_NAMES))`` (``"vit"``) with the shipped weights.

    Raises
    ------
    ValueError
        If ``which`` is not ``"a"``, ``"b"`` or ``"vit"``.
    FileNotFoundError
        If the weights file is missing (never falls back to random weights).
    """
    if which not in WEIGHT_FILES:
        raise ValueError(f"`which` of load_demo_model must be one of {sorted(WEIGHT_FILES)}; got {which!r}.")
    resource = files(__package__).joinpath("weights", WEIGHT_FILES[which])
    if not resource.is_file():
        trainer = "train_vit" if which == "vit" else "train"
        raise FileNotFoundError(f"demo weights {WEIGHT_FILES[which]} are missing from the package "
                                f"({resource}); rebuild them with `python -m pipelines.demo.{trainer}`.")
    with as_file(resource) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = (DemoViT if which == "vit" else DemoNet)(num_classes=len(CLASS_NAMES))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    _logger.info("loaded demo model %s from %s", which, resource)
    return model.eval()
