"""A finished class folder in a notebook: :func:`open_class` gives its record and an inline display.

The display (``_repr_html_``) shows what the class page leads with, from the
same ``class.json``: the importances chart (:func:`pipelines.run.plots.plot_importances`),
each concept's visualization and top crops as small inline thumbnails (data
URIs: no file links, no network, a few KB each), and the areas of the checks.
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from maco.plot import data_uri

from .plots import PictureSource, open_picture, plot_importances
from .record import ClassRecord

__all__ = ["ClassResult", "class_html", "open_class"]

THUMB = 72  # px, longest side of a thumbnail in the display
THUMB_CROPS = 4  # top crops shown per concept
CHART_DPI = 72


def _thumbnail(pictures: PictureSource, rel: str) -> str:
    try:
        image = open_picture(pictures, rel)
    except (OSError, KeyError):
        return f"<span>missing {html.escape(rel)}</span>"
    return f'<img src="{data_uri(image, size=THUMB, format="JPEG")}" alt="{html.escape(rel)}">'


def _chart(record: ClassRecord) -> str:
    from matplotlib.figure import Figure  # not pyplot: the display must not leave a figure for the notebook

    fig = Figure(figsize=(5, 0.5 + 0.35 * max(len(record.concepts), 1)), dpi=CHART_DPI)
    plot_importances(record, ax=fig.subplots())
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with Image.open(buffer) as image:
        return f'<img src="{data_uri(image, size=max(image.size))}" alt="importances">'


def class_html(record: ClassRecord, pictures: PictureSource) -> str:
    """A class's inline display: the importances chart, each concept's visualization and top crops (thumbnails as
    data URIs, from the class folder or the in-memory pictures), and the areas of the checks."""
    r = record
    rows = "".join(
        f"<tr><td style='border-left:6px solid {html.escape(c.colour)}'>{c.rank + 1}</td>"
        f"<td>{c.importance_pct:.1f}%{f'<br><i>in {c.alike}</i>' if c.everywhere else ''}</td>"
        f"<td>{c.most_important_for}</td>"
        f"<td>{_thumbnail(pictures, c.visualization)}</td>"
        f"<td>{''.join(_thumbnail(pictures, rel) for rel in c.top_crops[:THUMB_CROPS])}</td></tr>"
        for c in sorted(r.concepts, key=lambda concept: concept.rank)
    )
    completeness = "" if r.completeness is None else f", completeness {r.completeness:.2f}"
    if r.decomposition is not None:
        completeness += f"; {html.escape(r.decomposition.summary())}"
    checks = "".join(
        f"; {name} area {curves.auc_ranking:.3f} (random order {curves.auc_random_order:.3f})"
        for name, curves in (("deletion", r.deletion), ("insertion", r.insertion)) if curves is not None
    )
    return (f"<div><b>{html.escape(r.class_name)} ({r.class_index})</b>: {r.n_concepts} concepts from {r.n_images} "
            f"images, {html.escape(r.model_id)} layer {html.escape(r.layer)}{completeness}{checks}.<br>"
            f"{_chart(r)}<table><thead><tr><th>rank</th><th>% of logit</th><th>top for</th><th>visualization</th>"
            f"<th>top crops</th></tr></thead><tbody>{rows}</tbody></table></div>")


@dataclass(repr=False)
class ClassResult:
    """A finished class: its folder and its :class:`~pipelines.run.record.ClassRecord` (``class.json``)."""

    folder: Path
    record: ClassRecord

    def __repr__(self) -> str:  # the record's own repr runs to pages
        r = self.record
        return (f"ClassResult({r.class_name!r} ({r.class_index}), n_concepts={r.n_concepts}, "
                f"folder={str(self.folder)!r})")

    def _repr_html_(self) -> str:
        return class_html(self.record, self.folder)


def open_class(folder: str | os.PathLike) -> ClassResult:
    """The finished class in ``folder`` (``<run>/classes/<index:04d>``); raises RecordError for a bad class.json."""
    folder = Path(folder)
    return ClassResult(folder, ClassRecord.load(folder / "class.json"))
