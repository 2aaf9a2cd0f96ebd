"""One call from the images of a class to its :class:`ConceptBank` (CRAFT, improved).

Stages (one progress bar each): crop and whole-image features (or the
:class:`ClassFeatures` given) -> the k sweep when ``n_concepts="auto"`` -> NMF
(Semi-NMF for signed features) and codes -> contributions (exact through a
linear head, gradient x input through another) -> Sobol indices.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from tqdm.auto import tqdm

from .alignment import class_directions
from .bank import ConceptBank, library_versions
from .feature_store import ClassFeatures, class_features
from .crops import extract_crops
from .data import LoadedImages
from .features import ModelSplit
from .importance import gradient_x_input, percent_of_logit, sobol_total_indices
from .decomposition import Decomposition, decision_kept, split_half_stability
from .n_concepts import (AUTO_CANDIDATES, AUTO_COMPLETENESS, FACTORIZATIONS, FIT_ON, FIT_ON_DEFAULT, _sweep,
                         contributions, factorize, resolve_fit_on)
from ._solvers import squared_error

__all__ = ["FACTORIZATION", "IMPORTANCES", "IMPORTANCE_ON", "crop_image", "extract_concepts"]

# how a concept's importance is measured; auto: exact through a linear head, gradient-input through another
IMPORTANCES = ("auto", "exact", "gradient-input", "sobol")
FACTORIZATION = ("auto", *FACTORIZATIONS)  # auto: semi-nmf when a feature is negative, nmf otherwise
IMPORTANCE_ON = ("images", "crops")  # on what it is measured
SOBOL_CROPS = 512  # crops (evenly spaced) that Sobol indices measured on crops use: n_designs * (k + 2) passes each


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"`{name}` of `extract_concepts` must be an int >= {low}; got {value!r}.")
    return int(value)


def extract_concepts(split: ModelSplit, images: LoadedImages | torch.Tensor, class_index: int, *,
                     n_concepts: int | str = 10, patch_size: int = 64, solver: str = "hals", sobol_designs: int = 32,
                     batch_size: int = 64, device: torch.device | str | None = None, random_state: int = 0,
                     features: ClassFeatures | None = None, amp: bool | None = None,
                     channels_last: bool | None = None, importance: str = "auto", importance_on: str = "images",
                     fit_on: str = FIT_ON_DEFAULT, factorization: str = "auto", stability: bool = True,
                     progress: bool = True) -> ConceptBank:
    """Find the concepts a model uses for one class, and how much each matters.

    Parameters
    ----------
    split : ModelSplit
        ``g`` (spatial features or tokens) and ``h``: a linear head (``head_weight``) gives exact
        contributions, any other head gradient x input ones.
    images : LoadedImages or Tensor, shape (N, 3, S, S)
        Images of the class in [0, 1].
    class_index : int
        The class whose logit the importances explain.
    n_concepts : int or "auto", default 10
        ``k``, concepts in the bank; ``"auto"``: the smallest of :data:`AUTO_CANDIDATES` whose completeness
        reaches :data:`AUTO_COMPLETENESS` (:func:`sweep_n_concepts`; the sweep is kept in the bank).
    patch_size : int, default 64
        Crop side in image pixels (stride ``int(0.8 p)``).
    solver : {"hals", "mu", "sklearn"}, default "hals"
        NMF solver (:class:`concepts.NMF`; Semi-NMF: ``"hals"`` or ``"mu"``).
    sobol_designs : int, default 32
        Sobol points per sample matrix; 0 skips the Sobol indices.
    batch_size : int, default 64
        Images or crops per forward pass.
    device : torch.device or str, optional
        Default: the device of the model.
    random_state : int, default 0
        Seed of the NMF initialisation and of the Sobol scrambling.
    features : ClassFeatures, optional
        The crop and image features of ``images`` (:func:`class_features`, same ``patch_size``), when the
        caller has them already: no feature is computed again.
    amp, channels_last : bool, optional
        bf16 autocast and channels_last for the forward passes; None: on CUDA only.
    importance : {"auto", "exact", "gradient-input", "sobol"}, default "auto"
        What ranks the concepts (:mod:`concepts.importance`): the exact share of the logit (a linear head
        only), gradient x input on the concept coefficients through the real head (equal to it on a linear
        head), or CRAFT's Sobol total index through the real head; ``"auto"``: exact for a linear head,
        gradient-input for another. The bank's ``contributions`` (and so completeness) are exact for a
        linear head and gradient x input for another, whatever ranks.
    importance_on : {"images", "crops"}, default "images"
        Measure it on the whole images or on the crops the bank was fitted on.
    fit_on : {"auto", "positions", "crops", "crops+images", "crops+positions"}, default "auto"
        The rows the NMF factorises (:data:`concepts.FIT_ON`, :func:`concepts.factorize`): the whole images'
        feature-map positions, each a part of one photo, whose mean is what the head reads (an image's codes
        are then its positions' mean); the crops' features only (CRAFT); those and the whole images' features
        appended; or the crops and the positions. Chosen on imagenette-val with EfficientNet-Lite0
        (BENCHMARKS.md "Parts, not the class"): fitted on the whole images, one concept that every photo
        shares takes most of each photo's logit; on the positions the decision splits into parts. ``"auto"``:
        positions for NMF, the crops and the whole images for Semi-NMF (:func:`concepts.resolve_fit_on`).
    factorization : {"auto", "nmf", "semi-nmf"}, default "auto"
        :class:`concepts.NMF` for non-negative features, :class:`concepts.SemiNMF` (signed bank, non-negative
        codes) for features of any sign (ViTs, ConvNeXt, Hardswish or GELU layers); ``"auto"``: Semi-NMF when
        a crop or image feature is negative, NMF otherwise. The bank records the one used.
    stability : bool, default True
        Also fit the bank on the even and on the odd images and record how well the two match
        (:func:`concepts.split_half_stability`, in the bank's ``decomposition``): two more fits.
    progress : bool, default True
        One tqdm bar per stage.

    Returns
    -------
    ConceptBank
    """
    if not isinstance(split, ModelSplit):
        raise TypeError(f"`split` of `extract_concepts` must be a ModelSplit; got {type(split).__name__}. "
                        "Build one with split_model(model, ...) or resnet50_split().")
    if isinstance(images, LoadedImages):
        tensor, paths, skipped = images.images, list(images.paths), list(images.skipped)
    elif isinstance(images, torch.Tensor):
        tensor, skipped = images, []
        paths = [f"<tensor>:{i}" for i in range(len(images))]
    else:
        raise TypeError(f"`images` of `extract_concepts` must be LoadedImages or a Tensor (N, 3, S, S); got "
                        f"{type(images).__name__}.")
    if tensor.ndim != 4 or tensor.shape[1] != 3 or tensor.shape[0] == 0:
        raise ValueError(f"`images` of `extract_concepts` must hold at least one image (N, 3, S, S); got shape "
                         f"{tuple(tensor.shape)}.")
    k = None if n_concepts == "auto" else _check_int(n_concepts, "n_concepts", 1)
    designs = _check_int(sobol_designs, "sobol_designs", 0)
    if designs == 1:
        raise ValueError("`sobol_designs` of `extract_concepts` must be 0 (no Sobol) or >= 2; got 1.")
    _check_int(batch_size, "batch_size", 1)
    for name, value, options in (("importance", importance, IMPORTANCES), ("importance_on", importance_on,
                                 IMPORTANCE_ON), ("fit_on", fit_on, ("auto", *FIT_ON)), ("factorization", factorization,
                                                                               FACTORIZATION)):
        if value not in options:
            raise ValueError(f"`{name}` of `extract_concepts` must be one of {', '.join(options)}; got {value!r}.")
    if importance == "sobol" and designs == 0:
        raise ValueError("`sobol_designs` of `extract_concepts` must be >= 2 when importance='sobol'; got 0.")
    if importance == "auto":
        importance = "exact" if split.head_weight is not None else "gradient-input"
    if importance == "exact" and split.head_weight is None:
        raise ValueError("`importance` of `extract_concepts` is 'exact', which needs a linear head (`head_weight`); "
                         "the head of this split is not one linear layer. Use 'gradient-input' (or 'auto') or 'sobol'.")
    if split.head_weight is not None:
        _check_class(class_index, split.head_weight.shape[0])
    n_crops = len(extract_crops(tensor, patch_size=patch_size))  # boxes only: checks patch_size, cuts no pixel
    if k is not None and n_crops < k:
        per_image = n_crops // len(tensor)
        need = math.ceil(k / max(per_image, 1))
        raise ValueError(f"`images` of `extract_concepts` must give at least n_concepts={k} crops; got "
                         f"{n_crops} ({len(tensor)} images x {per_image} crops of {patch_size} px). "
                         f"Pass at least {need} images, a smaller patch_size or fewer concepts.")
    if features is not None and (not isinstance(features, ClassFeatures) or len(features.images) != len(tensor)
                                 or features.patch_size != patch_size):
        got = f"{len(features.images)} images, patch_size {features.patch_size}" \
            if isinstance(features, ClassFeatures) else type(features).__name__
        raise ValueError(f"`features` of `extract_concepts` must be the ClassFeatures of the {len(tensor)} images "
                         f"with patch_size={patch_size}; got {got}. Compute them with class_features().")
    with split.inference(device) as dev:
        if features is None:
            features = class_features(split, tensor, patch_size=patch_size, batch_size=batch_size, device=dev,
                                      amp=amp, channels_last=channels_last, progress=progress)
        A, pooled = features.crops, features.images
        if split.head_weight is None:
            with torch.no_grad():
                _check_class(class_index, split.h(pooled[:1].to(dev)).shape[1])
        class_index = int(class_index)
        factorization = _factorization(factorization, A, pooled, features.positions)
        fit_on = resolve_fit_on(fit_on, factorization)
        sweep = None
        if k is None:  # the sweep fits every candidate k: the chosen one's bank is kept, not fitted again
            sweep, fits = _sweep(split, features, class_index, candidates=AUTO_CANDIDATES,
                                 threshold=AUTO_COMPLETENESS, solver=solver, fit_on=fit_on,
                                 factorization=factorization, random_state=random_state, device=dev,
                                 progress=progress)
            k = sweep.chosen
            W, U, codes = fits[k]
        else:
            with tqdm(total=1, desc=f"{factorization} ({solver}, k={k}, on {fit_on})", disable=not progress) as bar:
                W, U, codes = factorize(features, k, solver=solver, fit_on=fit_on, factorization=factorization,
                                        random_state=random_state, device=dev)
                bar.update()
        # the crops' own error, whatever rows were fitted (chunked, float64 sums: no (n, C) float64 copy of A)
        crop_error = squared_error(A, U.to(A), W.to(A)) ** 0.5
        imp = contributions(split, pooled, codes, W, class_index, device=dev)
        weight = class_directions(split, pooled, classes=[class_index], device=dev)[0][0]
        with tqdm(total=1, desc="decomposition (split-half stability)", disable=not progress) as bar:
            halves = split_half_stability(split, features, class_index, k, solver=solver, fit_on=fit_on,
                                          factorization=factorization, random_state=random_state,
                                          device=dev) if stability else None
            decomposition = Decomposition.measure(
                imp.contributions.numpy(), codes.numpy(), stability=halves,
                decision=decision_kept(split, pooled, codes, W, class_index, device=dev))
            bar.update()
        sobol = sobol_per_image = None
        if designs:
            with tqdm(total=len(tensor), desc="Sobol indices", unit="img", disable=not progress) as bar:
                sobol_per_image = sobol_total_indices(codes, W, split.h, class_index, n_designs=designs,
                                                      batch_size=max(batch_size, 16) * 16, seed=random_state,
                                                      device=dev, progress=bar.update).numpy()
            sobol = sobol_per_image.mean(0)
        per_image, scores = _ranking_importance(
            importance, importance_on, split, class_index, imp.contributions, pooled, codes, W,
            crops=(A.float().cpu(), U.float().cpu()), sobol_per_image=sobol_per_image, designs=designs,
            batch_size=batch_size, seed=random_state, device=dev)
    categories = split.categories
    return ConceptBank(
        W=W.numpy(), U=U.float().cpu().numpy(), crop_boxes=features.boxes.numpy(),
        crop_image_index=features.image_index.numpy(), image_paths=paths,
        contributions=imp.contributions.numpy(), residual=imp.residual.numpy(), logits=imp.logits.numpy(),
        importance_pct=imp.percent.numpy(), image_codes=codes.numpy(), bias=imp.bias, class_weight=weight.numpy(),
        model_id=split.model_id, layer=split.layer, class_index=class_index,
        class_name=categories[class_index] if categories is not None and class_index < len(categories) else None,
        seed=int(random_state), image_size=int(tensor.shape[-1]), patch_size=int(patch_size), solver=solver,
        reconstruction_error=float(crop_error),
        relative_reconstruction_error=crop_error / max(float(A.pow(2).sum(dtype=torch.float64)) ** 0.5, 1e-12),
        sobol=sobol, sobol_per_image=sobol_per_image, skipped=skipped, versions=library_versions(),
        importance=importance, importance_on=importance_on, fit_on=fit_on, importance_scores=scores.numpy(),
        importance_per_image=per_image.numpy(), n_concepts_sweep=None if sweep is None else sweep.to_dict(),
        factorization=factorization, decomposition=decomposition.to_dict(),
    )


def _check_class(class_index: object, n_classes: int) -> None:
    if isinstance(class_index, bool) or not isinstance(class_index, numbers.Integral) \
            or not 0 <= class_index < n_classes:
        raise ValueError(f"`class_index` of `extract_concepts` must be an int in [0, {n_classes - 1}]; got "
                         f"{class_index!r}. Use resolve_class(name, categories) for a class name.")


def _factorization(name: str, *features: torch.Tensor) -> str:
    """``name`` with ``"auto"`` resolved by the features' signs; NMF on negative features is refused."""
    low = min(float(f.min()) for f in features)
    signed = low < 0
    if name == "auto":
        return "semi-nmf" if signed else "nmf"
    if name == "nmf" and signed:
        raise ValueError(f"`factorization` of `extract_concepts` is 'nmf', but the features go negative (minimum "
                         f"{low:.4g}); use 'semi-nmf' (or 'auto'), or cut the model after a ReLU.")
    return name


def _ranking_importance(method: str, on: str, split: ModelSplit, class_index: int, exact: torch.Tensor,
                        pooled: torch.Tensor, codes: torch.Tensor, W: torch.Tensor, *,
                        crops: tuple[torch.Tensor, torch.Tensor], sobol_per_image: np.ndarray | None, designs: int,
                        batch_size: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image importances ``(N, k)`` on the whole images and the class-level scores ``(k,)`` that rank.

    The scores are % of the logit for ``exact`` and ``gradient-input`` (mean over images or crops), and the
    mean total index for ``sobol``; on ``crops`` they are measured on the crops' own features and codes.
    """
    def measure(features: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if method == "exact":
            return contributions(split, features, u, W, class_index).contributions
        return gradient_x_input(features, u, W, split.h, class_index, device=device)

    if method == "sobol":
        per_image = torch.as_tensor(sobol_per_image, dtype=torch.float64)
        if on == "images":
            return per_image, per_image.mean(0)
        crop_codes = crops[1][torch.linspace(0, len(crops[1]) - 1, min(SOBOL_CROPS, len(crops[1]))).long()]
        on_crops = sobol_total_indices(crop_codes, W, split.h, class_index, n_designs=designs,
                                       batch_size=max(batch_size, 16) * 16, seed=seed, device=device)
        return per_image, on_crops.double().mean(0)
    per_image = exact if method == "exact" else measure(pooled, codes)
    on_what = per_image if on == "images" else measure(*crops)
    return per_image, percent_of_logit(on_what)


def crop_image(images: LoadedImages | torch.Tensor, bank: ConceptBank, crop_index: int) -> torch.Tensor:
    """Crop ``crop_index`` of ``bank`` cut from the images it was extracted from.

    Parameters
    ----------
    images : LoadedImages or Tensor, shape (N, 3, S, S)
        The same images (same order) passed to :func:`extract_concepts`.
    bank : ConceptBank
    crop_index : int

    Returns
    -------
    Tensor, shape (3, p, p)
        True colour in [0, 1] (not normalised, not contrast-stretched).
    """
    tensor = images.images if isinstance(images, LoadedImages) else images
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4:
        raise TypeError(f"`images` of `crop_image` must be LoadedImages or a Tensor (N, 3, S, S); got "
                        f"{type(images).__name__}.")
    n = len(bank.crop_boxes)
    if isinstance(crop_index, bool) or not isinstance(crop_index, (numbers.Integral, np.integer)) \
            or not 0 <= crop_index < n:
        raise ValueError(f"`crop_index` of `crop_image` must be an int in [0, {n - 1}]; got {crop_index!r}.")
    image = int(bank.crop_image_index[crop_index])
    if image >= len(tensor) or tensor.shape[-1] != bank.image_size:
        raise ValueError(f"`images` of `crop_image` must be the {len(bank.image_paths)} images of side "
                         f"{bank.image_size} the bank was extracted from; got shape {tuple(tensor.shape)}.")
    x0, y0, x1, y1 = (int(v) for v in bank.crop_boxes[crop_index])
    return tensor[image, :, y0:y1, x0:x1].clone()
