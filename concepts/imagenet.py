"""The canonical ILSVRC-2012 class table, and the class folders of an ImageNet-style root.

A class's index comes from this table, never from the position of its wnid
folder among the folders a root happens to hold: on a root with only
``n01440764/`` and ``n02102040/``, counting folders would make the English
springer (217) class 1, which the model calls goldfish.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

__all__ = ["ImageNetClasses", "imagenet_classes", "imagenet_root_folders"]

_TABLE = "imagenet_classes.tsv"
_WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class ImageNetClasses:
    """The 1000 ILSVRC-2012 classes, by standard index.

    Attributes
    ----------
    wnids : tuple of str
        WordNet id of each class index (``wnids[217] == "n02102040"``).
    names : tuple of str
        Name of each class index, the same as torchvision's ImageNet categories
        (``names[217] == "English springer"``).
    index_of : mapping of str to int
        Class index of each wnid (read-only).
    """

    wnids: tuple[str, ...]
    names: tuple[str, ...]
    index_of: Mapping[str, int]


@cache
def imagenet_classes() -> ImageNetClasses:
    """The packaged ILSVRC-2012 class table (``concepts/imagenet_classes.tsv``), read once."""
    lines = resources.files("concepts").joinpath(_TABLE).read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:] if line]
    if lines[:1] != ["index\twnid\tname"] or [r[0] for r in rows] != [str(i) for i in range(1000)] \
            or any(len(r) != 3 or not _WNID.fullmatch(r[1]) for r in rows):
        raise RuntimeError(f"the packaged ImageNet class table concepts/{_TABLE} is damaged (expected a header "
                           "index/wnid/name and 1000 rows); reinstall concept-lens.")
    wnids = tuple(r[1] for r in rows)
    return ImageNetClasses(wnids=wnids, names=tuple(r[2] for r in rows),
                           index_of=MappingProxyType({w: i for i, w in enumerate(wnids)}))


def imagenet_root_folders(root: str | os.PathLike, *, argument: str = "`root`") -> dict[int, str]:
    """Standard class index -> wnid of every class folder under an ImageNet-style root.

    Every folder under ``root`` must be an ILSVRC-2012 wnid (hidden folders,
    starting with ``.``, and plain files are ignored): a root holding anything
    else is not an ImageNet layout, and guessing there would mislabel classes.

    Parameters
    ----------
    root : path
        Folder of ``<wnid>/`` class folders, e.g. ImageNet's ``train/``.
    argument : str, default "`root`"
        How error messages name ``root`` (e.g. "`--imagenet-root`").

    Returns
    -------
    dict of int to str
        Sorted by class index.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{argument} must be an existing folder of ILSVRC-2012 wnid folders "
                         f"(<root>/n01440764/*.JPEG, ...); got {str(root)!r}.")
    table = imagenet_classes()
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    strays = [name for name in folders if name not in table.index_of]
    if strays:
        more = f" and {len(strays) - 5} more" if len(strays) > 5 else ""
        shown = ", ".join(f"{name}/" for name in strays[:5]) + more
        raise ValueError(f"{argument} {root} must hold only ILSVRC-2012 wnid folders (like n01440764/), but {shown} "
                         f"{'is not one' if len(strays) == 1 else 'are not'}. Point it at ImageNet's train or val "
                         "folder, or move the other folders out.")
    if not folders:
        raise ValueError(f"{argument} {root} holds no class folders; expected {root}/<wnid>/*.JPEG "
                         "(e.g. n01440764/ for tench).")
    return dict(sorted((table.index_of[name], name) for name in folders))
