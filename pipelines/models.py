"""The models a run explains, as :class:`concepts.ModelSplit` objects.

A split is the one description of a model a run needs: the whole network
(for MaCo), where its concepts live (``layer``, pooled at ``pooled_layer``),
its linear head, input normalisation and size, and category names. This
module builds one from what a user names on the command line:

- ``--model``: a torchvision classification model (``resnet50``,
  ``efficientnet_b0``, ``regnet_y_800mf``, ...) or ``timm:NAME`` when timm is
  installed (``pip install 'concept-lens[timm]'``);
- ``--weights``: a weights name (torchvision's enum, whose ``transforms()``
  and ``meta`` give mean, std, input size and class names; timm's
  ``pretrained``), downloaded and cached on a user's machine, or a local
  state-dict file, whose head is sized from the file (the rows of its last
  linear weight) and whose metadata comes from the model's default weights,
  unless ``--mean``/``--std`` and ``--class-names`` say otherwise.

Records name the model as ``model_id`` = ``<source>/<name>/<weights>``, where
``<weights>`` is the weights name or ``sha256:<hex>`` of the file, so a page
says exactly which network it explains.

The concept stage needs more than a model: a layer with non-negative
features that the head reads linearly; :mod:`pipelines.concept_layer` checks
it (before any weights are loaded) and offers a shift when it can.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from concepts import ModelSplit, imagenet_classes, split_model
from .concept_layer import concept_split

__all__ = [
    "ModelMeta",
    "ModelSpec",
    "WeightsUnavailableError",
    "demo_model",
    "imagenet_resnet50",
    "load_model",
    "model_meta",
    "parse_model",
    "read_class_names",
    "read_state_dict",
]

_logger = logging.getLogger(__name__)

_WEIGHT_FILE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}
_TIMM_PREFIX = "timm:"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (no network) and are not in the local cache."""


@dataclass(frozen=True)
class ModelSpec:
    """A model named on the command line, checked without loading any weights.

    Attributes
    ----------
    source : {"torchvision", "timm"}
    name : str
        The architecture (``resnet50``; timm names may carry a pretrained tag, ``convnext_tiny.fb_in1k``).
    weights : str or None
        The weights name (torchvision's enum member, ``DEFAULT`` resolved; ``"pretrained"`` for timm), or None
        for ``weights_file``.
    weights_file : Path or None
        A local state-dict file.
    """

    source: str
    name: str
    weights: str | None
    weights_file: Path | None = None


@dataclass(frozen=True)
class ModelMeta:
    """What a model's weights say about its inputs and outputs (from the weights, or given for a local file)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    num_classes: int
    categories: list[str] | None


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    return f" Close matches: {', '.join(close)}." if close else ""


def _timm():
    try:
        import timm
    except ImportError:
        raise ValueError(
            "`--model timm:...` needs timm, which is not installed; install it with pip install 'concept-lens[timm]' "
            "(or pip install timm), or name a torchvision model."
        ) from None
    return timm


def _looks_like_file(weights: str) -> bool:
    return Path(weights).suffix in _WEIGHT_FILE_SUFFIXES or "/" in weights or os.sep in weights \
        or Path(weights).expanduser().exists()


def parse_model(model: str, weights: str | None = None) -> ModelSpec:
    """``--model`` and ``--weights`` as a :class:`ModelSpec`, checked without loading or downloading anything.

    Parameters
    ----------
    model : str
        A torchvision classification model name (``torchvision.models.list_models``) or ``timm:NAME``.
    weights : str, optional
        A weights name, or the path of a local state-dict file. Default: the model's default weights
        (torchvision's ``DEFAULT``, timm's pretrained).

    Raises
    ------
    ValueError
        Naming the argument, what was expected and close matches.
    """
    if model.startswith(_TIMM_PREFIX):
        timm = _timm()
        name = model[len(_TIMM_PREFIX):]
        if not timm.is_model(name):
            raise ValueError(f"`--model` {model!r}: timm has no model {name!r}.{_close(name, timm.list_models())} "
                             "timm.list_models() lists them all.")
        source, names = "timm", ["pretrained"]
    else:
        name = model
        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            raise ValueError(f"`--model` {model!r} is not a torchvision classification model.{_close(name, available)} "
                             "Use timm:NAME for a timm model (pip install timm).")
        source = "torchvision"
        names = [w.name for w in torchvision.models.get_model_weights(name)] + ["DEFAULT"]
    if weights is not None and _looks_like_file(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(f"`--weights` {weights}: no such file. Pass an existing state-dict file of {model} "
                             f"(torch.save(model.state_dict(), path)) or a weights name ({', '.join(names)}).")
        return ModelSpec(source, name, None, path)
    if weights is None:
        weights = "DEFAULT" if source == "torchvision" else "pretrained"
    if weights not in names:
        raise ValueError(f"`--weights` {weights!r} is neither a file nor a weights name of {model} "
                         f"({', '.join(names)}).")
    if source == "torchvision":
        weights = torchvision.models.get_model_weights(name).verify(weights).name
    return ModelSpec(source, name, weights)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file (``torch.load(weights_only=True)``: no code runs), on the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling, zip and format errors get the same actionable message
        raise ValueError(f"`--weights` {path} is not a readable PyTorch weights file ({type(err).__name__}: {err}). "
                         "Save one with torch.save(model.state_dict(), path).") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = f" (its keys: {', '.join(map(str, list(state)[:5]))})" if isinstance(state, dict) else ""
        raise ValueError(f"`--weights` {path} must hold a state_dict (names -> tensors); got a "
                         f"{type(state).__name__}{keys}. From a training checkpoint, save "
                         "checkpoint['state_dict'] (or model.state_dict()) alone.")
    return state


def _head_rows(state: dict[str, torch.Tensor], path: Path) -> int:
    """The number of classes of a state dict: the rows of its last linear weight (the classifier)."""
    linear = [key for key, value in state.items() if key.endswith("weight") and value.ndim == 2]
    if not linear:
        raise ValueError(f"`--weights` {path} holds no linear layer weight (2-D `*.weight`), so it has no "
                         "classifier head to size; pass the state_dict of a classification model.")
    return int(state[linear[-1]].shape[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_meta(spec: ModelSpec, *, state: dict[str, torch.Tensor] | None = None,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> ModelMeta:
    """Mean, std, input size, number of classes and class names of ``spec``, without loading weights.

    Named weights carry their own metadata, so ``mean``/``std`` given with them are refused. A local file
    (``state``, from :func:`read_state_dict`) takes its number of classes from its head and the rest from the
    model's default weights, unless ``mean``/``std`` are given; its class names are the default weights' when
    the head has as many classes (else None: the caller names them).
    """
    if spec.weights_file is None and (mean is not None or std is not None):
        raise ValueError(f"`--mean`/`--std` are for a local weights file; {spec.source} weights {spec.weights} of "
                         f"{spec.name} carry their own normalisation. Drop them, or pass `--weights FILE`.")
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and (len(values) != 3 or (name == "std" and min(values) <= 0)):
            raise ValueError(f"`--{name}` must be 3 {'positive ' if name == 'std' else ''}numbers, one per RGB "
                             f"channel; got {list(values)}.")
    if spec.weights_file is not None and state is None:
        raise ValueError(f"`state` of model_meta is needed with the weights file {spec.weights_file}; read it with "
                         "read_state_dict.")
    if spec.source == "torchvision":
        enum = torchvision.models.get_model_weights(spec.name)
        named = enum[spec.weights] if spec.weights is not None else enum.DEFAULT
        transforms = named.transforms()
        default = (tuple(transforms.mean), tuple(transforms.std), int(transforms.crop_size[0]))
        categories = list(named.meta["categories"])
        n = len(categories)
    else:
        cfg = _timm().models.get_pretrained_cfg(spec.name)
        if cfg is None:
            raise ValueError(f"`--model` timm:{spec.name}: timm has no pretrained config for it (mean, std, input "
                             "size); name a model with one, e.g. timm:resnet50.")
        default = (tuple(cfg.mean), tuple(cfg.std), int(cfg.input_size[-1]))
        n = int(cfg.num_classes)
        categories = list(cfg.label_names) if cfg.label_names else None
        if categories is None and n == 1000:
            categories = list(imagenet_classes().names)  # timm's 1000-class weights are ImageNet-1k, in its order
    if spec.weights_file is not None:
        rows = _head_rows(state, spec.weights_file)
        categories, n = categories if rows == n else None, rows
    return ModelMeta(mean=tuple(mean) if mean is not None else default[0],
                     std=tuple(std) if std is not None else default[1],
                     input_size=default[2], num_classes=n, categories=categories)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """``--class-names``: one class name per line, in the order of the model's outputs."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"`--class-names` {path}: cannot read it ({err}); pass a UTF-8 text file with one class "
                         "name per line, in the order of the model's outputs.") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names or "" in names:
        raise ValueError(f"`--class-names` {path} must hold one non-empty class name per line (line "
                         f"{names.index('') + 1 if '' in names else 1} is empty).")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"`--class-names` {path} names classes more than once ({', '.join(repeated)}); each line "
                         "must name one class.")
    return names


def _architecture(spec: ModelSpec, num_classes: int) -> nn.Module:
    """The model with fresh random weights and a head of ``num_classes`` (no download)."""
    if spec.source == "torchvision":
        return getattr(torchvision.models, spec.name)(weights=None, num_classes=num_classes).eval()
    return _timm().create_model(spec.name, pretrained=False, num_classes=num_classes).eval()


def _with_weights(spec: ModelSpec, meta: ModelMeta, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """The model with its weights: from the local file's ``state``, or downloaded (cached by torch / timm)."""
    if spec.weights_file is not None:
        model = _architecture(spec, meta.num_classes)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            details = "; ".join(line.strip()[:200] for line in str(err).splitlines()[1:3])
            raise ValueError(f"`--weights` {spec.weights_file} is not a state_dict of {spec.source} {spec.name} "
                             f"({details}). Pass the model it was saved from with --model.") from None
        _logger.info("loaded %s weights from %s", spec.name, spec.weights_file)
        return model.eval()
    try:
        if spec.source == "torchvision":
            return getattr(torchvision.models, spec.name)(weights=spec.weights).eval()
        return _timm().create_model(spec.name, pretrained=True).eval()
    except (OSError, RuntimeError) as err:  # urllib's URLError and hub errors are OSErrors; a cut download raises
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        where = f"torch's cache folder {cache}" if spec.source == "torchvision" else "the Hugging Face cache"
        raise WeightsUnavailableError(
            f"could not get {spec.source}'s {spec.name} weights {spec.weights} ({type(err).__name__}: {err}). "
            f"Without a network, put the weights file in {where} or pass `--weights FILE` (a local state-dict)."
        ) from None


def load_model(spec: ModelSpec, meta: ModelMeta, *, state: dict[str, torch.Tensor] | None = None,
               categories: list[str] | None = None, layer: str | None = None, shift_features: bool = False,
               concepts: bool = False) -> ModelSplit:
    """The split of ``spec`` with its weights; with ``concepts``, checked for the concept stage first.

    Parameters
    ----------
    spec, meta : from :func:`parse_model` and :func:`model_meta`
    state : dict, optional
        The tensors of ``spec.weights_file`` (:func:`read_state_dict`).
    categories : list of str, optional
        Class names, one per output (default ``meta.categories``).
    layer, shift_features :
        As in :func:`concept_split`.
    concepts : bool
        Check, on the architecture with random weights and before the weights are loaded (or downloaded), that
        the concept stage can run (:func:`concept_split`); then apply ``layer`` and ``shift_features``.
    """
    categories = categories if categories is not None else meta.categories
    if categories is not None and len(categories) != meta.num_classes:
        raise ValueError(f"{spec.name} has {meta.num_classes} classes but {len(categories)} class names were given; "
                         "give one name per output.")

    weights = spec.weights if spec.weights_file is None else f"sha256:{_sha256(spec.weights_file)}"

    def split_of(model: nn.Module) -> ModelSplit:
        split = split_model(model, mean=meta.mean, std=meta.std, input_size=meta.input_size, categories=categories,
                            model_id=f"{spec.source}/{spec.name}/{weights}")
        return concept_split(split, layer=layer, shift_features=shift_features) if concepts else split

    if concepts:  # the checks need the architecture only: they fail before any download or load
        split_of(_architecture(spec, meta.num_classes))
    return split_of(_with_weights(spec, meta, state))


def imagenet_resnet50(
    weights: str | WeightsEnum = "IMAGENET1K_V2", weights_path: str | os.PathLike | None = None
) -> ModelSplit:
    """torchvision's ResNet50, split at ``layer4``, from its weights enum or a local state-dict file.

    Parameters
    ----------
    weights : str or ResNet50_Weights
        Which torchvision weights (``"IMAGENET1K_V2"``, ``"IMAGENET1K_V1"``,
        ``"DEFAULT"``); downloaded once and cached by torch.
    weights_path : path, optional
        A local ``state_dict`` file, for machines without internet (metadata
        from the default weights).

    Raises
    ------
    WeightsUnavailableError
        When the weights cannot be downloaded: one line saying where to put
        them or to pass a local file.
    """
    spec = parse_model("resnet50", str(weights_path) if weights_path is not None else getattr(weights, "name", weights))
    state = read_state_dict(spec.weights_file) if spec.weights_file is not None else None
    return load_model(spec, model_meta(spec, state=state), state=state)


def demo_model(which: str = "a") -> ModelSplit:
    """The embedded demo network (see :mod:`pipelines.demo`), split like a ResNet."""
    from .demo import CLASS_NAMES, DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, load_demo_model

    return split_model(
        load_demo_model(which),
        mean=tuple(DEMO_MEAN),
        std=tuple(DEMO_STD),
        input_size=DEMO_INPUT_SIZE,
        categories=list(CLASS_NAMES),
        model_id=f"demo/{which}",
    )
