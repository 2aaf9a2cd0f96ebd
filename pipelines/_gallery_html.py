"""HTML of the gallery pages: escaping, the page template, and the class page.

:mod:`pipelines.gallery` reads the run and writes the files; this module only
turns one class's ``class.json`` data into HTML. Every text goes through
:func:`html.escape`; links between pages use class indices, never names.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any
from urllib.parse import quote

_logger = logging.getLogger(__name__)

_NA = "\u2014"  # shown for a missing number


_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="stylesheet" href="${root}assets/style.css">
<script src="${root}assets/app.js"></script>
</head>
<body>
<header class="top"><div class="wrap">$crumb<h1>$heading</h1>$stats</div></header>
<main>
$body
</main>
<footer>concept-lens gallery &middot; static, works offline</footer>
</body>
</html>
""")


@dataclass
class _Class:
    """One class folder: its index (from the folder name) and parsed data."""

    index: int
    folder: Path
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def name(self) -> str:
        return str(self.data.get("class_name") or f"class {self.index}")


def _e(value: Any) -> str:
    """HTML-escape any value as text (quotes too)."""
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str, default: str = _NA) -> str:
    """Format a number, or return ``default`` for None / non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return format(value, fmt)


def _stats(items: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<li>{_e(label)} <b>{_e(value)}</b></li>" for label, value in items)
    return f'<ul class="stats">{cells}</ul>'


def _page(title: str, heading: str, body: str, *, root: str, crumb: str = "", stats: str = "") -> str:
    return _PAGE.substitute(title=_e(title), heading=_e(heading), body=body, root=root, crumb=crumb, stats=stats)


def _paths(data: dict[str, Any], key: str) -> list[Any]:
    """``data[key]`` as a list (missing: empty; not a list: a schema error)."""
    value = data.get(key) or []
    if not isinstance(value, list):
        raise TypeError(f"{key!r} must be a list; got {type(value).__name__}")
    return value


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """``data[key]`` as a list of dicts (items that are not dicts are dropped)."""
    return [item for item in _paths(data, key) if isinstance(item, dict)]


def _resolve(folder: Path, rel: Any) -> Path | None:
    """``folder/rel`` if it is an existing file inside ``folder``, else None."""
    if not isinstance(rel, str) or not rel:
        return None
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        return None
    target = folder.joinpath(*posix.parts)
    return target if target.is_file() else None


def _missing(rel: Any, folder: Path, missing: list[str], cls: str = "") -> str:
    """Placeholder for an image that is not there (and a logged warning)."""
    klass = f' class="missing {_e(cls)}"'
    if not isinstance(rel, str) or not rel:
        return f"<div{klass}>no image</div>"
    _logger.warning("image %s referenced by %s is missing", rel, folder / "class.json")
    missing.append(f"{folder}/{rel}")
    return f"<div{klass}>missing image: {_e(rel)}</div>"


def _img(folder: Path, rel: Any, *, alt: str, missing: list[str], cls: str = "") -> str:
    """``<img>`` for ``folder/rel`` (page in ``folder``), or a placeholder.

    Absolute paths and paths leaving ``folder`` count as missing.
    """
    if _resolve(folder, rel) is None:
        return _missing(rel, folder, missing, cls)
    klass = f' class="{_e(cls)}"' if cls else ""
    src = quote(PurePosixPath(rel.replace("\\", "/")).as_posix())
    return f'<img src="{_e(src)}" alt="{_e(alt)}"{klass}>'


def _aligned(concept: dict[str, Any], known: set[int]) -> str:
    items = []
    for entry in _list(concept, "aligned_classes")[:5]:
        index = entry.get("class_index")
        label = f"{entry.get('class_name', '?')} ({index})"
        if isinstance(index, int) and index in known:
            label_html = f'<a href="../{index:04d}/index.html">{_e(label)}</a>'
        else:
            label_html = _e(label)
        cos = _num(entry.get("cosine"), ".2f")
        items.append(f'<li>{label_html} <span class="cos">cos {cos}</span></li>')
    if not items:
        return ""
    return f'<h4>Aligned classes</h4><ul class="aligned">{"".join(items)}</ul>'


def _viz(c: _Class, concept: dict[str, Any], title: str, missing: list[str]) -> str:
    plain = _img(c.folder, concept.get("visualization"), cls="plain", alt=f"visualization of {title}", missing=missing)
    alpha_rel = concept.get("visualization_alpha")
    if not alpha_rel:
        return f'<figure class="viz">{plain}</figure>'
    alpha = _img(
        c.folder, alpha_rel, cls="alpha checker", alt=f"alpha-blended visualization of {title}", missing=missing
    )
    button = '<button type="button" class="toggle-alpha" aria-pressed="false" hidden>Show alpha</button>'
    return (
        f'<figure class="viz"><div class="pair">{plain}{alpha}</div>'
        f"<figcaption><span>MaCo visualization</span>{button}</figcaption></figure>"
    )


def _concept_head(concept: dict[str, Any], rank: int) -> str:
    """Title line: rank, concept id, % of logit (with a meter) and Sobol."""
    pct = _num(concept.get("importance_pct"), ".1f")
    parts = [f'<h3>Concept {rank + 1} <span class="muted">(id {_e(concept.get("concept_id", "?"))})</span></h3>']
    if pct != _NA:
        parts.append(
            f'<span class="pct">{pct}%</span><span class="muted">of logit</span>'
            f'<meter min="0" max="100" value="{pct}">{pct}%</meter>'
        )
    else:
        parts.append(f'<span class="pct">{_NA}</span><span class="muted">of logit</span>')
    if concept.get("sobol") is not None:
        parts.append(f'<span class="muted">Sobol {_num(concept.get("sobol"), ".2f")}</span>')
    return f'<div class="head">{"".join(parts)}</div>'


def _concept(c: _Class, concept: dict[str, Any], known: set[int], missing: list[str]) -> str:
    rank = concept.get("rank", 0)
    rank = rank if isinstance(rank, int) else 0
    title = f"concept {rank + 1} of {c.name}"
    crops = "".join(
        _img(c.folder, rel, alt=f"top crop {i + 1} of {title}", missing=missing)
        for i, rel in enumerate(_paths(concept, "top_crops"))
    )
    crops_html = f'<h4>Top crops</h4><div class="crops">{crops}</div>' if crops else ""
    mosaic = ""
    if concept.get("mosaic"):
        mosaic_img = _img(c.folder, concept["mosaic"], alt=f"mosaic of {title}", missing=missing)
        mosaic = f'<details class="mosaic"><summary>Mosaic (visualization + crops)</summary>{mosaic_img}</details>'
    return (
        f'<article class="concept rank-{min(rank, 9)}" id="concept-{rank}">\n'
        f"{_concept_head(concept, rank)}\n{_viz(c, concept, title, missing)}\n"
        f'<div class="side">{crops_html}{_aligned(concept, known)}{mosaic}</div>\n'
        f"</article>"
    )


def _inversions(c: _Class, missing: list[str]) -> str:
    figures = []
    for i, inv in enumerate(_list(c.data, "inversions")):
        ref = _img(c.folder, inv.get("reference"), alt=f"reference {i + 1}", missing=missing)
        out = _img(c.folder, inv.get("inversion"), alt=f"inversion {i + 1}", missing=missing)
        source = inv.get("source")
        source_html = f'<br><span class="muted">{_e(source)}</span>' if source else ""
        figures.append(
            f'<figure class="inversion"><div class="pair">{ref}{out}</div>'
            f"<figcaption>reference &rarr; inversion, cosine "
            f"<b>{_num(inv.get('cosine'), '.3f')}</b>{source_html}"
            f"</figcaption></figure>"
        )
    if not figures:
        return ""
    return f'<h2>Feature inversions</h2><div class="inversions">{"".join(figures)}</div>'


def _skipped(c: _Class) -> str:
    rows = "".join(
        f"<tr><td>{_e(s.get('path', '?'))}</td><td>{_e(s.get('reason', ''))}</td></tr>"
        for s in _list(c.data, "skipped")
    )
    if not rows:
        return ""
    return (
        f'<h2>Skipped images</h2><table class="skipped"><thead><tr><th>File</th>'
        f"<th>Reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _concepts(c: _Class) -> list[dict[str, Any]]:
    """Concepts by rank (0 first), then by importance for unranked ones."""

    def key(concept: dict[str, Any]) -> tuple[float, float]:
        rank, pct = concept.get("rank"), concept.get("importance_pct")
        rank = rank if isinstance(rank, int) and not isinstance(rank, bool) else float("inf")
        pct = pct if isinstance(pct, (int, float)) else float("-inf")
        return rank, -pct

    return sorted(_list(c.data, "concepts"), key=key)


def _class_page(c: _Class, known: set[int], missing: list[str]) -> str:
    d = c.data
    status = d.get("status")
    badge = f' <span class="badge">{_e(status)}</span>' if status not in (None, "done") else ""
    stats = (
        _stats(
            [
                ("class", c.index),
                ("wnid", d.get("wnid") or _NA),
                ("model", d.get("model_id") or _NA),
                ("images", d.get("n_images", _NA)),
                ("crops", d.get("n_crops", _NA)),
                ("concepts", len(_list(d, "concepts"))),
                ("skipped", len(_list(d, "skipped"))),
            ]
        )
        + badge
    )
    concepts = "\n".join(_concept(c, k, known, missing) for k in _concepts(c))
    body = (
        f"<h2>Concepts, by importance</h2>\n"
        f"{concepts or '<p class=muted>No concepts yet.</p>'}\n"
        f"{_inversions(c, missing)}{_skipped(c)}"
    )
    crumb = '<div class="crumb"><a href="../../index.html">&larr; All classes</a></div>'
    heading = f"{c.name} ({c.index})"
    return _page(heading, heading, body, root="../../", crumb=crumb, stats=stats)
