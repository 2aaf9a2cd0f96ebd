"""Loading the shipped demo weights (package data ``pipelines/demo/weights/demo_{a,b}.pt``)."""
from __future__ import annotations

import logging
from importlib.resources import as_file, files

import torch

from .model import DemoNet
from .parts import CLASS_NAMES

__all__ = ["WEIGHT_FILES", "load_demo_model"]

_logger = logging.getLogger(__name__)

WEIGHT_FILES: dict[str, str] = {"a": "demo_a.pt", "b": "demo_b.pt"}


def load_demo_model(which: str = "a") -> DemoNet:
    """One of the two shipped demo networks, in eval mode, on the CPU.

    Parameters
    ----------
    which : {"a", "b"}
        ``"a"`` (training seed 0) is the model to explain; ``"b"`` (seed 1) is
        the independently trained model used for transferability scores.

    Returns
    -------
    DemoNet
        ``DemoNet(num_classes=len(CLASS_NAMES))`` with the shipped weights.

    Raises
    ------
    ValueError
        If ``which`` is not ``"a"`` or ``"b"``.
    FileNotFoundError
        If the weights file is missing (never falls back to random weights).
    """
    if which not in WEIGHT_FILES:
        raise ValueError(f"`which` of load_demo_model must be one of {sorted(WEIGHT_FILES)}; got {which!r}.")
    resource = files(__package__).joinpath("weights", WEIGHT_FILES[which])
    if not resource.is_file():
        raise FileNotFoundError(f"demo weights {WEIGHT_FILES[which]} are missing from the package "
                                f"({resource}); rebuild them with `python -m pipelines.demo.train`.")
    with as_file(resource) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = DemoNet(num_classes=len(CLASS_NAMES))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    _logger.info("loaded demo model %s from %s", which, resource)
    return model.eval()
