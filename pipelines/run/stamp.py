"""Stamps: what a cached result was made from, so a rerun reuses it only when nothing changed.

Every cached stage of a class run (the concept bank, the concept renders, the
inversion renders, the class record) is written together with a
:class:`Stamp`: the settings the stage uses, a digest of the model's weights,
a digest of the image folder's listing (names, sizes, modification times)
and :data:`CACHE_SCHEMA`. A stage's stamp includes the key of the stage it
builds on, so a change anywhere redoes that stage and everything after it.

A stamp is written *after* the result it describes and removed *before* a
stage is redone, so a run killed half-way through writing a result leaves no
stamp, and the result is redone on resume. It lists a digest of each file of
the result, so a file damaged later (a flipped byte in a picture that still
decodes) is redone too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from concepts import ModelSplit

from ..io import load_json, save

__all__ = ["CACHE_SCHEMA", "STAMP_FILE", "Stamp", "digest", "folder_digest", "weights_digest"]

_logger = logging.getLogger(__name__)

# Bump when the layout or meaning of a cached file changes: every cached result is then redone.
CACHE_SCHEMA = 4  # 4: render caches hold WebP images and 8-bit alpha PNGs (maco.result schema 3)
STAMP_FILE = "stamp.json"


def digest(obj: Any) -> str:
    """A short, stable hex digest of JSON-able data (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def folder_digest(folder: str | os.PathLike) -> dict[str, Any]:
    """``{"entries": n, "digest": ...}`` of a folder's entries: name, kind, size, modification time.

    Cheap (one ``stat`` per entry, no decoding) and sensitive to any file
    added, removed, replaced or edited in place. Entries that cannot be
    stat-ed (broken links) count by name.
    """
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            try:
                info = entry.stat()
                entries.append((entry.name, entry.is_dir(), info.st_size, info.st_mtime_ns))
            except OSError as err:
                entries.append((entry.name, "unreadable", type(err).__name__, 0))
    entries.sort()
    return {"entries": len(entries), "digest": digest(entries)}


def _file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (cached results are MBs: read in one go)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_digest(split: ModelSplit) -> str:
    """Digest of every parameter and buffer of the split's model (names, dtypes, shapes and bytes).

    Cached per split and recomputed when any tensor was changed in place
    (PyTorch counts in-place changes in each tensor's ``_version``), so a
    1000-class rerun hashes a ResNet50 once, not once per class.
    """
    state = sorted((f"{i}.{name}", tensor) for i, module in enumerate(split.modules())
                   for name, tensor in module.state_dict(keep_vars=True).items())
    versions = tuple(tensor._version for _, tensor in state)
    cached = _digests.get(split)
    if cached is not None and cached[0] == versions:
        return cached[1]
    hasher = hashlib.sha256()
    for name, tensor in state:
        value = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest_ = hasher.hexdigest()[:20]
    _digests[split] = (versions, digest_)
    return digest_


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for key, value in obj.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: obj}


@dataclass(frozen=True)
class Stamp:
    """The inputs a cached result depends on; two results with equal keys are interchangeable."""

    inputs: dict[str, Any]

    def __post_init__(self) -> None:
        # Store the JSON form (tuples become lists), so a stamp compares equal to the one it was read back from.
        object.__setattr__(self, "inputs", json.loads(json.dumps(self.inputs, sort_keys=True, default=str)))

    @property
    def key(self) -> str:
        return digest({"schema": CACHE_SCHEMA, **self.inputs})

    def to_dict(self) -> dict[str, Any]:
        return {"schema": CACHE_SCHEMA, "key": self.key, "inputs": self.inputs}

    def changes_from(self, recorded: Any) -> str | None:
        """Why a recorded stamp (``to_dict`` form) does not match this one; None when it does."""
        if not isinstance(recorded, dict) or not isinstance(recorded.get("inputs"), dict):
            return "it has no readable stamp"
        if recorded.get("schema") != CACHE_SCHEMA:
            return f"it was made by cache schema {recorded.get('schema')!r}, this is {CACHE_SCHEMA}"
        if recorded.get("key") == self.key and recorded["inputs"] == self.inputs:  # both: a damaged stamp is redone
            return None
        old, new = _flatten(recorded["inputs"]), _flatten(self.inputs)
        changed = [f"{name}: {old.get(name, '(none)')!r} -> {new.get(name, '(none)')!r}"
                   for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        return "its inputs changed (" + "; ".join(changed or ["stamp key"]) + ")"

    def check(self, directory: Path) -> str | None:
        """Why the result in ``directory`` cannot be reused; None when its stamp matches and its files are intact."""
        path = Path(directory) / STAMP_FILE
        if not path.is_file():
            return "it has no stamp (never finished, or made by an older version)"
        try:
            recorded = load_json(path)
        except (OSError, ValueError) as err:
            return f"its stamp is unreadable ({type(err).__name__}: {err})"
        changed = self.changes_from(recorded)
        if changed is not None or not isinstance(recorded.get("files"), dict):  # stamps of 0.1.0 list no files
            return changed
        for name, expected in sorted(recorded["files"].items()):
            try:
                if _file_digest(Path(directory) / name) != expected:
                    return f"its file {name} is damaged (its digest changed)"
            except OSError:
                return f"its file {name} is missing"
        return None

    def write(self, directory: Path) -> None:
        """Mark the result in ``directory`` as made from these inputs (call after writing it).

        The stamp lists a digest of each file, so a byte changed in a picture that still decodes is found too.
        """
        directory = Path(directory)
        files = {p.name: _file_digest(p) for p in sorted(directory.iterdir())
                 if p.is_file() and p.name != STAMP_FILE and not p.name.startswith(".")}
        save({**self.to_dict(), "files": files}, directory / STAMP_FILE)

    @staticmethod
    def clear(directory: Path) -> None:
        """Unmark ``directory`` before its result is redone, so a kill mid-write is never reused."""
        (Path(directory) / STAMP_FILE).unlink(missing_ok=True)
