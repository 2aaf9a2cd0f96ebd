"""Concepts shared across the classes of a run: each concept's nearest concepts of *other* classes.

Two concepts are compared by the cosine of their directions (the rows of
their classes' concept banks, in the same feature space), so a "fur" concept
of two dog classes links the two pages. Only the directions are read from each
class's bank (:meth:`concepts.ConceptBank.load_directions`) and compared in
chunks, so a 1000-class run (10,000 concepts) never holds the full similarity
matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from concepts import ConceptBank

__all__ = ["SharedConcept", "bank_directions", "shared_concepts", "top_pairs"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedConcept:
    """A concept of another class close to the one it is listed under."""

    class_index: int
    class_name: str
    rank: int
    cosine: float


def bank_directions(class_folder: Path) -> np.ndarray | None:
    """The concept directions ``(k, C)`` of a class folder's bank, by concept id; None (and a warning: its
    concepts link to no other class) when it has no readable bank."""
    try:
        return ConceptBank.load_directions(class_folder / "bank")
    except (OSError, KeyError, ValueError) as err:
        _logger.warning("class folder %s: no concept directions, so no shared concepts (%s)", class_folder, err)
        return None


def shared_concepts(
    directions: dict[int, np.ndarray],
    ranks: dict[int, list[int]],
    names: dict[int, str],
    *,
    per_concept: int = 3,
    min_cosine: float = 0.5,
    chunk: int = 2048,
) -> dict[int, dict[int, list[SharedConcept]]]:
    """Per class and concept rank: the ``per_concept`` closest concepts of other classes, cosine >= ``min_cosine``.

    Parameters
    ----------
    directions : dict of class index -> (k, C) array
        Concept directions by concept id.
    ranks : dict of class index -> list of int
        ``ranks[c][concept_id]`` is the concept's rank on its class page.
    names : dict of class index -> str
    """
    sizes = {c: w.shape[1] for c, w in directions.items()}
    if len(set(sizes.values())) > 1:  # classes from different layers cannot be compared: keep the majority
        width = max(set(sizes.values()), key=list(sizes.values()).count)
        directions = {c: w for c, w in directions.items() if w.shape[1] == width}
    owners = [(c, concept) for c, w in sorted(directions.items()) for concept in range(len(w))]
    if len({c for c, _ in owners}) < 2:
        return {}
    rows = torch.from_numpy(np.concatenate([directions[c] for c in sorted(directions)]))
    rows = torch.nn.functional.normalize(rows.float(), dim=1)
    owner_class = torch.tensor([c for c, _ in owners])
    found: dict[int, dict[int, list[SharedConcept]]] = {}
    for start in range(0, len(rows), chunk):
        sims = rows[start : start + chunk] @ rows.T
        sims[owner_class[start : start + chunk, None] == owner_class[None]] = -2.0  # never the concept's own class
        best = sims.topk(min(per_concept, len(rows)), dim=1)
        for i, (values, indices) in enumerate(zip(best.values.tolist(), best.indices.tolist())):
            c, concept = owners[start + i]
            links = [
                SharedConcept(owners[j][0], names.get(owners[j][0], str(owners[j][0])),
                              ranks[owners[j][0]][owners[j][1]], round(v, 3))
                for v, j in zip(values, indices) if v >= min_cosine
            ]
            if links:
                found.setdefault(c, {})[ranks[c][concept]] = links
    return found


def top_pairs(shared: dict[int, dict[int, list[SharedConcept]]], n: int = 20) -> list[tuple[int, int, SharedConcept]]:
    """The ``n`` most similar pairs ``(class, rank, its closest other concept)``, each unordered pair once."""
    seen, pairs = set(), []
    for c, by_rank in shared.items():
        for rank, links in by_rank.items():
            link = links[0]
            key = frozenset({(c, rank), (link.class_index, link.rank)})
            if key not in seen:
                seen.add(key)
                pairs.append((c, rank, link))
    return sorted(pairs, key=lambda pair: -pair[2].cosine)[:n]
