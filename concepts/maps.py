"""Concept maps: where each concept is in an image.

The spatial features ``(N, C, h, w)`` of the whole images are decomposed
position by position on the fixed bank (non-negative least squares; signed
features and bank for a Semi-NMF bank), giving codes ``(N, k, h, w)``, then
upsampled bilinearly to the image size. These are CRAFT's "upsampled U" maps
(not the paper's implicit-differentiation maps). For a ViT the positions are
its patch tokens (:mod:`concepts.tokens`): a map is the patch tokens projected
on the concept directions, also where the head reads the class token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .bank import ConceptBank
from .features import ModelSplit, extract_features
from .nmf import nnls_codes

__all__ = ["concept_maps"]


def concept_maps(split: ModelSplit, bank: ConceptBank, images: torch.Tensor, *, batch_size: int = 64,
                 device: torch.device | str | None = None, upsample: bool = True) -> torch.Tensor:
    """Per-image, per-concept coefficient maps.

    Parameters
    ----------
    split : ModelSplit
        The split the bank was extracted with.
    bank : ConceptBank
    images : Tensor, shape (N, 3, H, W)
        Images in [0, 1].
    batch_size : int, default 64
    device : torch.device or str, optional
        Default: the device of the model.
    upsample : bool, default True
        Resize the maps to ``(H, W)``; otherwise keep the feature grid ``(h, w)``.

    Returns
    -------
    Tensor, shape (N, k, H, W) (or (N, k, h, w)), float32 on the CPU, >= 0
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` of `concept_maps` must be a Tensor (N, 3, H, W) in [0, 1]; got "
                         f"{getattr(images, 'shape', type(images).__name__)}.")
    feats = extract_features(split, images, batch_size=batch_size, device=device, pooled=False)  # (N, C, h, w)
    n, c, h, w = feats.shape
    if c != bank.W.shape[1]:
        raise ValueError(f"`bank` of `concept_maps` must match the features of layer `{split.layer}` "
                         f"({c} channels); got a bank with {bank.W.shape[1]}. Use the split it was extracted with.")
    dev = split.device() if device is None else torch.device(device)
    rows = feats.permute(0, 2, 3, 1).reshape(-1, c).to(dev)
    codes = nnls_codes(rows, torch.as_tensor(bank.W), solver="hals", signed=bank.factorization == "semi-nmf")
    maps = codes.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()
    if upsample:
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False).clamp_min_(0)
    return maps.cpu()
