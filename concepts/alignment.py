"""Which way each class points in the pooled features: what a concept direction is compared with.

For a linear head a class's direction is its row of head weights (the Lens
site's concept-to-class alignment). A head that is not linear (ConvNeXt's
LayerNorm + Linear, MobileNetV3's MLP) has no such row; its local equivalent
is the gradient of the class logit with respect to the pooled features, which
depends on where it is taken: here, averaged over one class's images, so it
says which way the head reads features like theirs.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .features import ModelSplit

__all__ = ["ALIGNED_BY", "class_directions"]

# what class_directions returns, for the records: head weights, or mean logit gradients
ALIGNED_BY = ("head weights", "mean logit gradients")
_GRAD_FLOATS = 1 << 24  # floats in one batch of per-class gradients (64 MB)


def class_directions(split: ModelSplit, pooled: torch.Tensor, *, classes: Sequence[int] | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, str]:
    """One direction per class ``(classes, C)``, float32 on the CPU, and which of :data:`ALIGNED_BY` it is.

    Parameters
    ----------
    split : ModelSplit
    pooled : Tensor, shape (N, C)
        Pooled features of a class's images (:func:`concepts.extract_features`): where the gradients of a head
        that is not linear are taken (their mean); unused for a linear head.
    classes : sequence of int, optional
        Only these classes' directions, in this order (a bank needs its own class's; default: every class).
    device : torch.device or str, optional
        Default: the model's device.
    """
    if split.head_weight is not None:
        weight = split.head_weight.detach()
        return (weight if classes is None else weight[list(classes)]).float().cpu(), ALIGNED_BY[0]
    if not isinstance(pooled, torch.Tensor) or pooled.ndim != 2 or len(pooled) == 0:
        raise ValueError(f"`pooled` of `class_directions` must be a Tensor (N, C) with N >= 1; got "
                         f"{getattr(pooled, 'shape', type(pooled).__name__)}.")
    total = None
    with split.inference(device) as dev:
        n_classes = split.h(pooled[:1].float().to(dev)).shape[1]
        wanted = torch.arange(n_classes) if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
        rows = max(1, _GRAD_FLOATS // (len(wanted) * pooled.shape[1]))
        eye = torch.eye(n_classes, device=dev)[wanted.to(dev)]  # one row of grad_outputs per wanted class
        for start in range(0, len(pooled), rows):
            a = pooled[start:start + rows].float().to(dev).requires_grad_(True)
            with torch.enable_grad():
                logits = split.h(a)
                (grads,) = torch.autograd.grad(logits, a, grad_outputs=eye[:, None, :].expand(-1, len(a), -1),
                                               is_grads_batched=True)  # (wanted classes, rows, C)
            part = grads.sum(1).double().cpu()
            total = part if total is None else total + part
    return (total / len(pooled)).float(), ALIGNED_BY[1]
