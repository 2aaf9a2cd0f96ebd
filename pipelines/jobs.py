"""Which classes to run: parse ``--classes`` and find each class's images.

Classes are keyed by their index, never by a short name (the Lens site lost
five classes to name collisions). ``--classes`` accepts indices, ranges
(``0-9``), WordNet ids and names, comma- or space-separated.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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


def imagenet_jobs(root: str | os.PathLike, classes: Sequence[str], categories: Sequence[str]) -> list[ClassJob]:
    """Jobs for an ImageNet-style root (``root/<wnid>/*.JPEG``; index = position of the wnid, sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"`--imagenet-root` {root} is not a folder; point it at a folder of <wnid>/ class folders.")
    wnids = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not wnids:
        raise ValueError(f"`--imagenet-root` {root} has no class folders; expected {root}/<wnid>/*.JPEG.")
    names = list(categories) if len(categories) == len(wnids) else wnids
    return [
        ClassJob(class_index=i, class_name=names[i], folder=root / wnids[i], wnid=wnids[i])
        for i in parse_class_list(classes, names, wnids)
    ]
