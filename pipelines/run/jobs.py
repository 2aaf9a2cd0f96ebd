"""Which classes to run: parse ``--classes`` and find each class's images.

Classes are keyed by their index, never by a short name (the Lens site lost
five classes to name collisions). ``--classes`` accepts indices, ranges
(``0-9``), WordNet ids and names, comma- or space-separated, each read by
:func:`concepts.resolve_class` (the project's one resolver). On an ImageNet
root they mean the standard ILSVRC-2012 classes (the packaged table in
:mod:`concepts.imagenet`), whichever subset of wnid folders the root holds.
On another root (``--data-root``, one sub-folder per class, as
``torchvision.datasets.ImageFolder`` reads it) each folder is the class of
the model it is named after, so a root holding some of the classes still
explains the right logits.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from torchvision.datasets.folder import find_classes

from concepts import imagenet_class_folders, imagenet_classes, imagenet_root_folders, resolve_class

__all__ = ["ClassJob", "class_folders", "folder_jobs", "imagenet_jobs", "parse_class_list"]


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
    classes; ``["all"]`` means every wnid folder under ``root``. Each requested
    class's folder must be under ``root`` (found by
    :func:`concepts.imagenet_class_folders`, which names every missing one).
    """
    table = imagenet_classes()
    if list(classes) == ["all"]:  # every wnid folder the root holds
        wanted = sorted(imagenet_root_folders(root, argument="`--imagenet-root`"))
    else:
        wanted = parse_class_list(classes, table.names, table.wnids)
    folders = imagenet_class_folders(root, wanted, root_argument="`--imagenet-root`", classes_argument="`--classes`")
    return [ClassJob(class_index=i, class_name=table.names[i], folder=folder, wnid=wnid) for i, wnid, folder in folders]


def class_folders(root: str | os.PathLike, *, argument: str = "`--data-root`") -> list[str]:
    """The class folders of an ImageFolder-style root, in ``torchvision.datasets.ImageFolder``'s order (sorted).

    That order is the class index of a model trained on the root with ImageFolder when its head has one output
    per folder.
    """
    if not Path(root).is_dir():
        raise ValueError(f"{argument} {root} is not a folder; pass a folder with one sub-folder of images per class.")
    try:
        return find_classes(root)[0]
    except FileNotFoundError:
        raise ValueError(f"{argument} {root} holds no class folders; expected {root}/<class name>/<images>.") from None


def folder_jobs(root: str | os.PathLike, classes: Sequence[str] | None, categories: Sequence[str]) -> list[ClassJob]:
    """Jobs for an ImageFolder-style root ``root/<class name>/*``: each folder is the class it is named after.

    Parameters
    ----------
    root : path
        One sub-folder per class, named exactly as in ``categories``.
    classes : sequence of str, optional
        ``--classes`` (indices, ranges, names): which of the root's classes to run. Default: all of them.
    categories : sequence of str
        The model's class names, by output index.
    """
    folders = class_folders(root)
    index = {name: i for i, name in enumerate(categories)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        shown = ", ".join(f"{name}/" for name in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5
                                                                   else "")
        close = difflib.get_close_matches(unknown[0], list(categories), n=3, cutoff=0.6)
        hint = f" (close to {unknown[0]}: {', '.join(close)})" if close else ""
        raise ValueError(f"`--data-root` {root}: the folders {shown} name no class of the model{hint}. Name each "
                         "folder as the class it holds, one of the model's class names (those of its weights, or of "
                         "--class-names FILE with a weights file).")
    present = {index[name]: Path(root) / name for name in folders}
    wanted = parse_class_list(classes, categories) if classes else sorted(present)
    missing = [i for i in wanted if i not in present]
    if missing:
        names = ", ".join(f"{i} ({categories[i]})" for i in missing[:5])
        held = ", ".join(f"{name}/" for name in folders[:10]) + (" ..." if len(folders) > 10 else "")
        raise ValueError(f"`--classes` asks for {names}{' and more' if len(missing) > 5 else ''}, whose folder is not "
                         f"in `--data-root` {root}; it holds {held}. Pick classes present there.")
    return [ClassJob(class_index=i, class_name=categories[i], folder=present[i]) for i in wanted]
