"""Which classes to run: parse ``--classes`` and find each class's images.

Classes are keyed by their index, never by a short name (the Lens site lost
five classes to name collisions). ``--classes`` accepts indices, ranges
(``0-9``), WordNet ids and names, comma- or space-separated. On an ImageNet
root they mean the standard ILSVRC-2012 classes (the packaged table in
:mod:`concepts.imagenet`), whichever subset of wnid folders the root holds.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from concepts.imagenet import imagenet_classes, imagenet_root_folders

__all__ = ["ClassJob", "imagenet_jobs", "parse_class_list", "resolve_class"]


@dataclass(frozen=True)
class ClassJob:
    """One class to explain: its index, names and image folder."""

    class_index: int
    class_name: str
    folder: Path
    wnid: str | None = None


def resolve_class(value: str | int, categories: Sequence[str], wnids: Sequence[str] | None = None) -> int:
    """Turn an index, a WordNet id or a class name into a class index."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if not 0 <= index < len(categories):
            raise ValueError(
                f"class index {index} is out of range: the model has {len(categories)} classes "
                f"(0-{len(categories) - 1})."
            )
        return index
    text = value.strip()
    if wnids is not None and text in wnids:
        return list(wnids).index(text)
    exact = [i for i, name in enumerate(categories) if name == text]
    if len(exact) == 1:
        return exact[0]
    lowered = [name.lower() for name in categories]
    matches = [i for i, name in enumerate(lowered) if name == text.lower()]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        options = ", ".join(f"{i} ({categories[i]})" for i in matches)
        raise ValueError(f"class name {text!r} is ambiguous: {options}; pass the index instead.")
    pool = list(categories) + list(wnids or [])
    close = difflib.get_close_matches(text, pool, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ValueError(
        f"unknown class {text!r}.{hint} Pass a class index (0-{len(categories) - 1}), a WordNet id or an exact name."
    )


def parse_class_list(spec: Sequence[str], categories: Sequence[str], wnids: Sequence[str] | None = None) -> list[int]:
    """``["0-2", "n01440764", "goldfish,7"]`` -> sorted unique class indices."""
    indices: list[int] = []
    for item in spec:
        for part in (p for p in item.split(",") if p.strip()):
            part = part.strip()
            low, sep, high = part.partition("-")
            if sep and low.isdigit() and high.isdigit():
                if int(low) > int(high):
                    raise ValueError(f"`--classes` range {part!r} is empty; write it as low-high, e.g. 0-9.")
                indices.extend(resolve_class(i, categories, wnids) for i in range(int(low), int(high) + 1))
            else:
                indices.append(resolve_class(part, categories, wnids))
    if not indices:
        raise ValueError("`--classes` is empty; give class indices, ranges (0-9), WordNet ids or names.")
    return sorted(set(indices))


def imagenet_jobs(root: str | os.PathLike, classes: Sequence[str]) -> list[ClassJob]:
    """Jobs for an ImageNet root ``root/<wnid>/*.JPEG``, by standard ILSVRC-2012 class index and name.

    ``classes`` resolve against the full 1000-class table, so ``217`` and
    ``n02102040`` both mean English springer even on a root holding two
    classes; each requested class's folder must be under ``root``.
    """
    table = imagenet_classes()
    present = imagenet_root_folders(root, argument="`--imagenet-root`")
    wanted = parse_class_list(classes, table.names, table.wnids)
    missing = [i for i in wanted if i not in present]
    if missing:
        listed = ", ".join(f"{i} ({table.names[i]}, folder {table.wnids[i]}/)" for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        held = ", ".join(f"{i} ({table.names[i]})" for i in list(present)[:5]) + (", ..." if len(present) > 5 else "")
        raise ValueError(f"`--classes` asks for {listed}{more}, not in `--imagenet-root` {root}, which holds "
                         f"{len(present)} class folders: {held}. Pick classes present there or add their folders.")
    return [
        ClassJob(class_index=i, class_name=table.names[i], folder=Path(root) / table.wnids[i], wnid=table.wnids[i])
        for i in wanted
    ]
