"""Which classes to run: parse ``--classes`` and find each class's images.

Classes are keyed by their index, never by a short name (the Lens site lost
five classes to name collisions). ``--classes`` accepts indices, ranges
(``0-9``), WordNet ids and names, comma- or space-separated, each read by
:func:`concepts.resolve_class` (the project's one resolver). On an ImageNet
root they mean the standard ILSVRC-2012 classes (the packaged table in
:mod:`concepts.imagenet`), whichever subset of wnid folders the root holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from concepts import imagenet_class_folders, imagenet_classes, resolve_class

__all__ = ["ClassJob", "imagenet_jobs", "parse_class_list"]


@dataclass(frozen=True)
class ClassJob:
    """One class to explain: its index, names and image folder."""

    class_index: int
    class_name: str
    folder: Path
    wnid: str | None = None


def parse_class_list(spec: Sequence[str], categories: Sequence[str], wnids: Sequence[str] | None = None) -> list[int]:
    """``["0-2", "n01440764", "goldfish,7"]`` -> sorted unique class indices (``--classes``)."""
    indices: list[int] = []
    for item in spec:
        for part in (p.strip() for p in item.split(",") if p.strip()):
            low, sep, high = part.partition("-")
            if sep and low.isdecimal() and high.isdecimal():
                if int(low) > int(high):
                    raise ValueError(f"`--classes` range {part!r} is empty; write it as low-high, e.g. 0-9.")
                indices.extend(resolve_class(i, categories, wnids, argument="`--classes`")
                               for i in range(int(low), int(high) + 1))
            else:
                indices.append(resolve_class(part, categories, wnids, argument="`--classes`"))
    if not indices:
        raise ValueError("`--classes` is empty; give class indices, ranges (0-9), WordNet ids or names.")
    return sorted(set(indices))


def imagenet_jobs(root: str | os.PathLike, classes: Sequence[str]) -> list[ClassJob]:
    """Jobs for an ImageNet root ``root/<wnid>/*.JPEG``, by standard ILSVRC-2012 class index and name.

    ``classes`` resolve against the full 1000-class table, so ``217`` and
    ``n02102040`` both mean English springer even on a root holding two
    classes; each requested class's folder must be under ``root`` (found by
    :func:`concepts.imagenet_class_folders`, which names every missing one).
    """
    table = imagenet_classes()
    wanted = parse_class_list(classes, table.names, table.wnids)
    folders = imagenet_class_folders(root, wanted, root_argument="`--imagenet-root`", classes_argument="`--classes`")
    return [ClassJob(class_index=i, class_name=table.names[i], folder=folder, wnid=wnid) for i, wnid, folder in folders]
