"""The result of concept extraction for one class: :class:`ConceptBank`.

Saved as ``arrays.npz`` (numeric arrays, loaded with ``allow_pickle=False``)
plus ``bank.json`` (schema version, metadata, library versions), each written
to a temporary name and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import html
import importlib.metadata
import io
import json
import os
import platform
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .importance import completeness

__all__ = ["EVERYWHERE_IMAGE_SPREAD", "EVERYWHERE_MIN_IMAGES", "EVERYWHERE_SPREAD", "SCHEMA_VERSION", "ConceptBank",
           "coefficient_spread", "library_versions", "top_crops"]

# 2: importance, importance_on, importance_scores, importance_per_image; 3: n_concepts_sweep; 4: factorization;
# 5: decomposition, fit_on "positions"
SCHEMA_VERSION = 5

# A concept whose coefficients vary over the crops by less than this (std / mean) is in every crop at about the
# same strength: what all the features share, not a part of the images. Semi-NMF makes one such concept per class
# (the demo ViT: 0.04-0.11, its final LayerNorm's offset; EfficientNet-Lite0: 0.14-0.19), the others measure 0.32
# and more; NMF's concepts 0.57 and more (benchmarks/coefficient_spread.py, BENCHMARKS.md).
EVERYWHERE_SPREAD = 0.25

# The same bound over the whole images: a concept whose image codes vary by less than this is in every photo at about
# the same strength (the class's mean, a background every photo has), not a part of some photos. Fitted on the
# crops and the whole images, EfficientNet-Lite0's lowest concept measures 0.21-0.56 over the photos of
# imagenette-val (the class's shared concept); fitted on the photos' positions 0.35 and more; on the demo CNN (every
# image holds every part) parts measure 0.25-0.99 and only a small background concept falls below
# (benchmarks/imagenette_decomposition.py, BENCHMARKS.md "Parts, not the class").
EVERYWHERE_IMAGE_SPREAD = EVERYWHERE_SPREAD
# ... measured over at least this many photos: over a handful, a part that happens to be in each of them looks alike
EVERYWHERE_MIN_IMAGES = 20

_BAR_PX = 160  # width of the importance bars in a notebook's display
_ARRAYS_FILE = "arrays.npz"
_ARRAYS = ("W", "U", "crop_boxes", "crop_image_index", "contributions", "residual", "logits", "importance_pct",
           "image_codes", "sobol", "sobol_per_image", "class_weight", "importance_scores", "importance_per_image")


def coefficient_spread(codes: np.ndarray) -> np.ndarray:
    """Per column of ``codes`` (n, k): std / mean over the rows, NaN for a column that is never used."""
    codes = np.asarray(codes, dtype=np.float64)
    mean = codes.mean(0)
    return np.divide(codes.std(0), mean, out=np.full(mean.shape, np.nan), where=mean > 0)


def top_crops(codes: np.ndarray, image_index: np.ndarray, n: int, *, one_per_image: bool = True) -> list[list[int]]:
    """Per column of ``codes`` (n_crops, k): the rows with the highest positive coefficient, at most ``n``, at most
    one per source image (``image_index``) when ``one_per_image`` (:meth:`ConceptBank.top_crops`)."""
    codes, image_index = np.asarray(codes), np.asarray(image_index)
    result = []
    for concept in range(codes.shape[1]):
        chosen: list[int] = []
        seen: set[int] = set()
        for idx in np.argsort(-codes[:, concept], kind="stable"):
            if codes[idx, concept] <= 0:
                break
            image = int(image_index[idx])
            if one_per_image and image in seen:
                continue
            seen.add(image)
            chosen.append(int(idx))
            if len(chosen) == n:
                break
        result.append(chosen)
    return result


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on: written beside every saved result."""
    found = {}
    for name in ("concept-lens", "torch", "torchvision", "numpy", "scikit-learn", "pillow"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return {**found, "python": platform.python_version()}


@dataclass(eq=False)
class ConceptBank:
    """Concepts of one class: the bank, the crops behind it, and importances.

    Notation: ``k`` concepts, ``C`` channels, ``n`` crops, ``N`` images.

    Attributes
    ----------
    W : ndarray, shape (k, C)
        The concept bank (NMF components; signed for Semi-NMF), float32.
    U : ndarray, shape (n, k)
        Coefficients of the crops (NMF codes).
    crop_boxes : ndarray, shape (n, 4), int64
        ``x0, y0, x1, y1`` of each crop in its (resized, cropped) source image.
    crop_image_index : ndarray, shape (n,), int64
        Index into ``image_paths`` of each crop's source image.
    image_paths : list of str
        Source file of each image (``"<tensor>:i"`` for images passed as a tensor).
    contributions : ndarray, shape (N, k)
        Contribution of each concept to each image's class logit: exact through a linear head, gradient x
        input through another (:func:`concepts.gradient_contributions`).
    residual : ndarray, shape (N,)
        Logit part the concepts do not carry (``(a - uW) . w_c`` for a linear head).
    logits : ndarray, shape (N,)
        Class logit of each image (contributions + residual + bias).
    importance_pct : ndarray, shape (k,)
        % of logit (see :mod:`concepts.importance`), sums to 100.
    image_codes : ndarray, shape (N, k)
        Concept coefficients of the whole images.
    bias : float
        Head bias of the class (a head that is not linear: its logit of all-zero features).
    class_weight : ndarray, shape (C,)
        Head weights of the class (a head that is not linear: the gradient of its logit with respect to the
        pooled features, mean over the images).
    sobol, sobol_per_image : ndarray, shape (k,) and (N, k), or None
        Sobol total-order indices (mean over images, per image).
    importance, importance_on : str
        What ranks the concepts (``exact``, ``gradient-input``, ``sobol``) and where it was measured
        (``images``, ``crops``): see :func:`concepts.extract_concepts`.
    fit_on : str
        The rows the NMF factorised: a key of :data:`concepts.FIT_ON`.
    factorization : str
        ``nmf`` (non-negative features and bank) or ``semi-nmf`` (signed features and bank, codes >= 0).
    importance_scores : ndarray, shape (k,), or None
        The class-level scores that rank the concepts (:attr:`order`); None: ``importance_pct``.
    importance_per_image : ndarray, shape (N, k), or None
        The same importance per whole image (C-μFidelity reads it).
    n_concepts_sweep : dict or None
        When ``k`` was chosen by data (``n_concepts="auto"``): the sweep's curve
        (:class:`concepts.NConceptsSweep` as a dict); None for a given ``k``.
    decomposition : dict or None
        How the decision splits into concepts (:class:`concepts.Decomposition` as a dict): important concepts,
        median top share, decision kept, split-half stability, each concept's image spread.
    model_id, layer : str
    class_index : int
    class_name : str or None
    seed : int
    image_size, patch_size : int
    solver : str
    reconstruction_error, relative_reconstruction_error : float
        ``||A - UW||_F`` on the crops, and divided by ``||A||_F``.
    skipped : list of (str, str)
        Files that could not be decoded, with the reason.
    versions : dict
        Library versions that produced the bank.
    """

    W: np.ndarray
    U: np.ndarray
    crop_boxes: np.ndarray
    crop_image_index: np.ndarray
    image_paths: list[str]
    contributions: np.ndarray
    residual: np.ndarray
    logits: np.ndarray
    importance_pct: np.ndarray
    image_codes: np.ndarray
    bias: float
    class_weight: np.ndarray
    model_id: str
    layer: str
    class_index: int
    class_name: str | None = None
    seed: int = 0
    image_size: int = 224
    patch_size: int = 64
    solver: str = "hals"
    reconstruction_error: float = float("nan")
    relative_reconstruction_error: float = float("nan")
    sobol: np.ndarray | None = None
    sobol_per_image: np.ndarray | None = None
    importance: str = "exact"
    importance_on: str = "images"
    fit_on: str = "crops"
    importance_scores: np.ndarray | None = None
    importance_per_image: np.ndarray | None = None
    n_concepts_sweep: dict[str, Any] | None = None
    factorization: str = "nmf"
    decomposition: dict[str, Any] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=library_versions)

    # ------------------------------------------------------------- helpers
    @property
    def n_concepts(self) -> int:
        """Number of concepts."""
        return int(self.W.shape[0])

    @property
    def order(self) -> np.ndarray:
        """Concept ids by importance (``importance_scores``, else % of logit), most important first, shape (k,)."""
        scores = self.importance_pct if self.importance_scores is None else self.importance_scores
        return np.argsort(-np.asarray(scores), kind="stable")

    @property
    def completeness(self) -> float:
        """Share of the class logit above the head's bias that the concepts carry, mean over the images.

        ``mean_i sum_k contributions[i, k] / mean_i (logits[i] - bias)``; NaN when the denominator is 0.
        The rest is the NMF residual read by the head (:mod:`concepts.importance`).
        """
        return completeness(self.contributions, self.logits, self.bias)

    @property
    def coefficient_spread(self) -> np.ndarray:
        """Per concept, how much its coefficient varies over the crops: std / mean, shape (k,); NaN if never used.

        A part of an object is strong in some crops and absent from others; a concept below
        :data:`EVERYWHERE_SPREAD` is in every crop at about the same strength (what all the features share, such as
        a ViT's LayerNorm offset), so its maps and top crops locate nothing.
        """
        return coefficient_spread(self.U)

    @property
    def image_spread(self) -> np.ndarray:
        """Per concept, how much its coefficient varies over the whole images: std / mean, shape (k,); NaN for all
        when the bank has fewer than :data:`EVERYWHERE_MIN_IMAGES` images (too few to tell)."""
        if len(self.image_codes) < EVERYWHERE_MIN_IMAGES:
            return np.full(self.n_concepts, np.nan)
        return coefficient_spread(self.image_codes)

    @property
    def everywhere(self) -> np.ndarray:
        """Per concept, whether it is in every crop alike (:attr:`coefficient_spread` below
        :data:`EVERYWHERE_SPREAD`) or in every photo alike (:attr:`image_spread` below
        :data:`EVERYWHERE_IMAGE_SPREAD`), shape (k,), bool."""
        with np.errstate(invalid="ignore"):
            return (self.coefficient_spread < EVERYWHERE_SPREAD) | (self.image_spread < EVERYWHERE_IMAGE_SPREAD)

    @property
    def crop_sources(self) -> list[str]:
        """Source file of each crop, shape (n,)."""
        return [self.image_paths[int(i)] for i in self.crop_image_index]

    def top_crops(self, n: int = 10, *, one_per_image: bool = True) -> list[list[int]]:
        """Crop indices per concept (indexed by concept id), highest coefficient first.

        Parameters
        ----------
        n : int, default 10
            Crops per concept (fewer when not enough crops have a positive
            coefficient, or distinct source images).
        one_per_image : bool, default True
            Keep at most one crop per source image (its best).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"`n` of `ConceptBank.top_crops` must be an int >= 1; got {n!r}.")
        return top_crops(self.U, self.crop_image_index, n, one_per_image=one_per_image)

    # ------------------------------------------------------------- display
    def _repr_html_(self) -> str:
        """A notebook's summary: what the bank explains, and each concept's signed % of logit as a bar, by rank."""
        pct = np.asarray(self.importance_pct, dtype=np.float64)
        scale = max(float(np.abs(pct).max(initial=0.0)), 1e-12)
        origin = _BAR_PX // 2 if (pct < 0).any() else 0  # the zero line: centred only when a share is negative
        rows = []
        for rank, concept in enumerate(self.order):
            value = float(pct[concept])
            width = round(abs(value) / scale * (_BAR_PX - origin if value >= 0 else origin))
            left = origin if value >= 0 else origin - width
            colour = "#332288" if value >= 0 else "#CC6677"
            sobol = "" if self.sobol is None else f"{float(self.sobol[concept]):.3f}"
            rows.append(f"<tr><td>{rank + 1}</td><td>{int(concept)}</td><td style='text-align:right'>{value:.1f}%</td>"
                        f"<td style='width:{_BAR_PX}px'><div style='margin-left:{left}px;width:{width}px;height:10px;"
                        f"background:{colour}'></div></td><td>{sobol}</td></tr>")
        name = html.escape(f"{self.class_name or 'class'} ({self.class_index})")
        return (f"<div><b>ConceptBank</b> of {name}: {self.n_concepts} concepts of {self.W.shape[1]} channels from "
                f"{len(self.U)} crops of {len(self.image_paths)} images; {html.escape(self.model_id)}, layer "
                f"{html.escape(self.layer)}; completeness {self.completeness:.2f}, relative reconstruction error "
                f"{self.relative_reconstruction_error:.3f}{self._decomposition_words()}; ranked by "
                f"{html.escape(self.importance)} on "
                f"{html.escape(self.importance_on)}.<table><thead><tr><th>rank</th><th>concept</th><th>% of logit</th>"
                f"<th></th><th>{'Sobol' if self.sobol is not None else ''}</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>")

    def _decomposition_words(self) -> str:
        if self.decomposition is None:
            return ""
        from .decomposition import Decomposition  # the decomposition module reads the bank's spread

        return f"; {html.escape(Decomposition(**self.decomposition).summary())}"

    # ----------------------------------------------------------------- i/o
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``arrays.npz`` and ``bank.json`` into ``directory`` (created); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS if getattr(self, name) is not None}
        meta: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            if f.name not in _ARRAYS:
                value = getattr(self, f.name)
                meta[f.name] = [list(s) for s in value] if f.name == "skipped" else value
        _atomic_write(directory / _ARRAYS_FILE, lambda fh: _write_npz(fh, arrays))
        text = json.dumps(meta, indent=2, allow_nan=True)
        _atomic_write(directory / "bank.json", lambda fh: fh.write(text.encode("utf-8")))
        return directory

    @staticmethod
    def load_directions(directory: str | os.PathLike) -> np.ndarray:
        """Only the concept directions ``W`` ``(k, C)`` of a bank saved in ``directory``, as float32: what
        comparing the concepts of many classes needs, without reading every crop's codes."""
        with np.load(Path(directory) / _ARRAYS_FILE, allow_pickle=False) as npz:
            return np.asarray(npz["W"], dtype=np.float32)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ConceptBank":
        """Read a bank written by :meth:`save`; warns when library versions differ."""
        directory = Path(directory)
        meta = json.loads((directory / "bank.json").read_text(encoding="utf-8"))
        version = meta.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise ValueError(f"`directory` of `ConceptBank.load` must hold a bank of schema version "
                             f"{SCHEMA_VERSION}; got {version!r} in {directory}. Re-run the extraction.")
        with np.load(directory / _ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta["skipped"] = [tuple(s) for s in meta.get("skipped", [])]
        known = {f.name for f in fields(cls)}
        bank = cls(**{k: v for k, v in meta.items() if k in known}, **{k: v for k, v in arrays.items() if k in known})
        current = library_versions()
        if bank.versions.get("concept-lens") != current["concept-lens"]:
            warnings.warn(f"ConceptBank in {directory} was written by concept-lens "
                          f"{bank.versions.get('concept-lens')}, this is {current['concept-lens']}.",
                          RuntimeWarning, stacklevel=2)
        return bank


def _write_npz(fh: Any, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so equal banks give equal bytes.

    Deflate halves nothing of the float codes and directions, but the crop boxes and image indices of a
    1300-image class (about 0.8 MB) shrink to a few KB.
    """
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(file_handle)`` to a temporary file beside ``path``, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the bank from the other users of a shared run
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.filename is None:  # write() and fsync() name no file: say which
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
