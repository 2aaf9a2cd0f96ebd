"""A finished class as matplotlib plots, drawn from its :class:`~pipelines.run.record.ClassRecord`.

The class page renders from the same record (``class.json``), so a plot and
the page can never show different numbers; the pictures (crops, concept maps)
are the files the record names, read from the class folder (or, for a class
explained in memory, taken from its pictures by the same names). Each function
draws on the Axes or Figure it is given (or on pyplot's current one / a new
one, as :func:`maco.plot_maco` does) and returns it; nothing is shown or
saved here, so the functions work under any backend, Agg included.

Colours and line styles are the page's: each concept keeps its colour
(:mod:`pipelines.run.overlays`), and the curves' styles differ as well as their
colours, so the plots read in greyscale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Union

import numpy as np
from PIL import Image

from .record import ClassRecord, ConceptEntry

__all__ = [
    "CURVES",
    "PictureSource",
    "open_picture",
    "plot_clusters",
    "plot_concept_maps",
    "plot_curves",
    "plot_image_concepts",
    "plot_importances",
    "plot_n_concepts",
    "plot_top_crops",
]

# Where a plot finds the pictures a record names: the class folder, or a class's in-memory pictures by name.
PictureSource = Union[str, os.PathLike, Mapping[str, Image.Image]]

# The class page's curves (templates/_charts.html): record field, label, colour, dashes.
_LINES = (("ranking", "ranking", "#332288", "-"), ("random_order", "random order", "#CC6677", (0, (7, 4))),
          ("random_regions", "random regions", "#999933", (0, (2, 3))))
CURVES = ("deletion", "insertion", "c_deletion", "c_insertion")  # what plot_curves draws
_PANEL = 1.6  # inches per picture in the figure grids


def _ranked(record: ClassRecord) -> list[ConceptEntry]:
    return sorted(record.concepts, key=lambda concept: concept.rank)


def _current_axes(ax):
    import matplotlib.pyplot as plt

    return plt.gca() if ax is None else ax


def _grid(fig, rows: int, columns: int):
    """``fig`` (a new pyplot figure sized for the grid when None) and its ``(rows, columns)`` array of Axes."""
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(_PANEL * columns, _PANEL * rows))
    return fig, fig.subplots(rows, columns, squeeze=False)


def open_picture(pictures: PictureSource, rel: str) -> Image.Image:
    """The picture ``rel`` (a name the record gives) from a class folder, or from the pictures of a class
    explained in memory (:attr:`pipelines.run.explain.ClassExplanation.pictures`), as RGB."""
    if isinstance(pictures, Mapping):
        return pictures[rel].convert("RGB")
    with Image.open(Path(pictures) / rel) as image:
        return image.convert("RGB")


def _picture(pictures: PictureSource, rel: str) -> np.ndarray:
    return np.asarray(open_picture(pictures, rel))


def plot_importances(record: ClassRecord, *, ax=None):
    """Each concept's signed % of logit as a horizontal bar, by rank (most important on top). Returns the axes.

    A bar has its concept's colour, as in the maps, the cluster graph and the page, so the charts can be read
    side by side; bars to the right push the class logit up, bars to the left (hatched) push it down. Each bar
    says for how many images its concept is the most important, the title how the decision splits
    (:class:`concepts.Decomposition`). A concept in every crop or photo alike
    (:attr:`~pipelines.run.record.ConceptEntry.alike`, a shared offset or the class's mean) says so.
    """
    ax = _current_axes(ax)
    concepts = _ranked(record)
    values = [concept.importance_pct for concept in concepts]
    bars = ax.barh(range(len(values)), values, color=[concept.colour for concept in concepts],
                   edgecolor="white")
    for bar, value in zip(bars, values):
        bar.set_hatch("////" if value < 0 else "")
    ax.bar_label(bars, labels=[f"{value:.1f}%, top for {c.most_important_for}" for value, c in zip(values, concepts)],
                 fontsize=8, padding=2)
    ax.margins(x=0.18)  # room for the labels at both ends, clear of the concept names
    ax.axvline(0, color="#888888", linewidth=0.8)
    ax.set_yticks(range(len(values)), [f"concept {c.rank + 1}" + (f"\n(in {c.alike})" if c.everywhere else "")
                                       for c in concepts])
    ax.invert_yaxis()
    ax.set_xlabel("% of logit")
    title = f"{record.class_name} ({record.class_index}): concepts by importance ({record.importance})"
    if record.decomposition is not None:
        title += f"\n{record.decomposition.summary()}"
    ax.set_title(title, fontsize=9)
    return ax


def plot_top_crops(record: ClassRecord, pictures: PictureSource, *, n: int | None = None, fig=None):
    """One row per concept (by rank): its top crops from the class's images, at most ``n``. Returns the figure."""
    concepts = _ranked(record)
    columns = max([len(c.top_crops[:n]) for c in concepts], default=0) or 1
    fig, axes = _grid(fig, max(len(concepts), 1), columns)
    for row, concept in zip(axes, concepts):
        for ax, rel in zip(row, concept.top_crops[:n]):
            ax.imshow(_picture(pictures, rel))
        row[0].set_title(f"concept {concept.rank + 1}: {concept.importance_pct:.1f}%", loc="left", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    return fig


def plot_concept_maps(record: ClassRecord, pictures: PictureSource, *, fig=None):
    """One row per concept (by rank): its map over the images where it is strongest. Returns the figure."""
    concepts = _ranked(record)
    columns = max([len(c.maps) for c in concepts], default=0) or 1
    fig, axes = _grid(fig, max(len(concepts), 1), columns)
    for row, concept in zip(axes, concepts):
        for ax, rel in zip(row, concept.maps):
            ax.imshow(_picture(pictures, rel))
        row[0].set_title(f"concept {concept.rank + 1}", loc="left", fontsize=9, color=concept.colour)
    for ax in axes.flat:
        ax.axis("off")
    return fig


def plot_image_concepts(record: ClassRecord, pictures: PictureSource, image: int = 0, *, ax=None):
    """Every concept's map over one of the class's most confident images (``record.overlays[image]``).

    Each pixel takes the colour of its strongest concept; the legend names the concepts with their % of logit.
    A concept in every crop alike is not drawn (its flat map would cover the photo), and the legend says so.
    Returns the axes.
    """
    from matplotlib.patches import Patch

    if not 0 <= image < len(record.overlays):
        raise ValueError(f"`image` of plot_image_concepts must be in [0, {len(record.overlays)}) (the class's "
                         f"concept maps, `map_images` of the run); got {image!r}.")
    ax = _current_axes(ax)
    ax.imshow(_picture(pictures, record.overlays[image]))
    ax.axis("off")
    handles = [Patch(color=c.colour, label=f"concept {c.rank + 1} ({c.importance_pct:.1f}%"
                     + (f", in {c.alike}: not drawn)" if c.everywhere else ")")) for c in _ranked(record)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    return ax


def plot_curves(record: ClassRecord, check: str = "deletion", *, ax=None):
    """p(class) as concepts are taken in ranking order, random orders and (on the photos) random regions.

    ``check`` is ``deletion`` or ``insertion`` (on the photos, :mod:`pipelines.run.deletion`) or ``c_deletion`` or
    ``c_insertion`` (in the features, :mod:`concepts.fidelity`). The legend gives each curve's area. Returns
    the axes.
    """
    from matplotlib.ticker import MaxNLocator

    if check not in CURVES:
        raise ValueError(f"`check` of plot_curves must be one of {', '.join(CURVES)}; got {check!r}.")
    curves = getattr(record.fidelity, check, None) if check.startswith("c_") else getattr(record, check)
    if curves is None:
        raise ValueError(f"class {record.class_index} has no {check} curves (a run with map_images=0 draws none).")
    ax = _current_axes(ax)
    for field, label, colour, dashes in _LINES:
        values = getattr(curves, field, None)
        if values is not None:
            area = getattr(curves, f"auc_{field}")
            ax.plot(range(len(values)), values, color=colour, linestyle=dashes, linewidth=2,
                    label=f"{label} (area {area:.3f})")
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left_out = getattr(curves, "left_out", [])  # image curves leave out concepts in every crop alike
    ax.set_xlabel("concepts " + ("removed" if check.endswith("deletion") else "put back")
                  + (f" (left out, in every crop or photo alike: {', '.join(str(r + 1) for r in left_out)})"
                     if left_out else ""))
    ax.set_ylabel("p(class)")
    ax.set_title(check.replace("c_", "C-").replace("_", " "))
    ax.legend(fontsize=8)
    return ax


def plot_clusters(record: ClassRecord, *, ax=None):
    """The cluster graph: the class's images placed by their concept contributions (PCA, :mod:`pipelines.run.layouts`),
    coloured by their most important concept. Returns the axes."""
    ax = _current_axes(ax)
    colours = {concept.rank: concept.colour for concept in record.concepts}
    points = record.clusters
    ax.scatter([p.x for p in points], [p.y for p in points], c=[colours.get(p.rank, "#999999") for p in points],
               edgecolors="white", s=40)
    for rank in sorted({p.rank for p in points}):
        ax.scatter([], [], color=colours.get(rank, "#999999"), label=f"concept {rank + 1} matters most")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{len(points)} images by their concept contributions")
    if points:  # a run with cluster_images=0 places none
        ax.legend(fontsize=8, loc="best")
    return ax


def plot_n_concepts(record: ClassRecord, *, ax=None):
    """The sweep ``k`` was chosen from (``--n-concepts auto``): completeness and relative reconstruction errors at
    each ``k``, the threshold (dashed) and the chosen ``k`` (dotted, its point ringed). Returns the axes."""
    sweep = record.n_concepts_sweep
    if sweep is None:
        raise ValueError(f"class {record.class_index} has no k sweep: its k was given; run with --n-concepts auto.")
    ax = _current_axes(ax)
    defined = [(k, c) for k, c in zip(sweep.k, sweep.completeness) if c is not None]
    ax.plot([k for k, _ in defined], [c for _, c in defined], "o-", color="#332288", label="completeness")
    ax.plot(sweep.k, sweep.reconstruction_error, "s--", color="#CC6677", label="reconstruction error (crops)")
    ax.plot(sweep.k, sweep.reconstruction_error_images, "^:", color="#117733", label="reconstruction error (images)")
    ax.axhline(sweep.threshold, color="#999933", linestyle=(0, (5, 4)), label=f"threshold {sweep.threshold:.2f}")
    ax.axvline(sweep.chosen, color="black", linestyle=":", label=f"chosen k = {sweep.chosen}")
    if sweep.chosen in dict(defined):
        ax.plot([sweep.chosen], [dict(defined)[sweep.chosen]], "o", markersize=14, markerfacecolor="none",
                markeredgecolor="black", markeredgewidth=2)
    ax.set_xticks(sweep.k)
    ax.set_xlabel("concepts (k)")
    ax.set_title("how many concepts")
    ax.legend(fontsize=8)
    return ax
