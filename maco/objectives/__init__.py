"""Objectives: what a visualization maximises.

An objective reads the activations of one or more layers and returns one
score per target, higher is better. Notation: ``T`` targets, ``K`` crops per
target, ``N = T * K`` samples in one forward pass, target-major (sample ``i``
belongs to target ``i // K``). A target's score is the mean over its own
``K`` crops only: targets batched together never influence each other.

Objectives are frozen dataclasses; ``a + b``, ``a - b``, ``-a`` and
``2.0 * a`` build new objectives and never modify their operands::

    obj = Objective.channel(model, "layer3", 7) + 0.5 * Objective.neuron(model, "fc", 1)

Terms of a sum have either one target (broadcast to all) or the same ``T``.
The render loop minimises ``-sum(scores)``: the sign is flipped there, once.

Objectives compare and hash by value, tensors included (same shape, dtype and
content), so equal objectives are interchangeable as dict keys or set members.
Any function of activations becomes an objective with
:meth:`Objective.from_function`, which handles the per-target reduction.

Layout: :mod:`~maco.objectives.base` (the interface, composition and constructors),
:mod:`~maco.objectives.builtin` (neuron, channel, layer, direction, inversion) and
:mod:`~maco.objectives.custom` (a user's function); every name is importable from here.
"""

from .base import Objective, Scaled, Sum
from .builtin import Channel, Direction, Inversion, Layer, Neuron
from .custom import FunctionObjective

__all__ = ["Channel", "Direction", "FunctionObjective", "Inversion", "Layer", "Neuron", "Objective", "Scaled", "Sum"]
