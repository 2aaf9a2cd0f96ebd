"""Static HTML gallery of a run: an index of classes and one page per class.

The site opens from disk (``file://``): no server, no CDN, no network. CSS and
JS are package data (``pipelines/gallery_assets``) copied into
``run_dir/assets/``. Input is one ``classes/<idx:04d>/class.json`` per class
(paths inside are relative to the class folder); output is
``run_dir/index.html`` and ``run_dir/classes/<idx:04d>/index.html``.

Every text goes through :func:`html.escape`; links between pages use class
indices, never names. Missing images are logged and shown as placeholders; a
``class.json`` that cannot be read is listed as broken on the index.
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.io import atomic_write_bytes, atomic_write_text, save

from ._gallery_html import (
    _NA,
    _Class,
    _e,
    _num,
    _stats,
    _page,
    _list,
    _resolve,
    _missing,
    _concepts,
    _class_page,
)

_logger = logging.getLogger(__name__)

__all__ = ["build_gallery"]

ASSET_FILES = ("style.css", "app.js")
THUMB_SIZE = 240  # px, longest side of the index thumbnails


def _read_class(folder: Path) -> _Class | None:
    """Parse ``folder/class.json``; None when the folder is not a class folder."""
    meta = folder / "class.json"
    if not meta.is_file():
        return None
    try:
        index = int(folder.name)
    except ValueError:
        _logger.warning("skipping %s: folder name is not a class index", folder)
        return None
    try:
        with open(meta, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        _logger.warning("cannot read %s: %s", meta, err)
        return _Class(index, folder, error=f"cannot read class.json: {err}")
    if not isinstance(data, dict):
        return _Class(index, folder, error="class.json is not a JSON object")
    if data.get("class_index") not in (None, index):
        _logger.warning("%s says class_index %r; using the folder's %d", meta, data.get("class_index"), index)
    return _Class(index, folder, data=data)


def _read_classes(run_dir: Path) -> list[_Class]:
    root = run_dir / "classes"
    if not root.is_dir():
        return []
    found = (_read_class(folder) for folder in sorted(root.iterdir()) if folder.is_dir())
    return sorted((c for c in found if c is not None), key=lambda c: c.index)


def _thumbnail(run_dir: Path, c: _Class, rel: Any, missing: list[str]) -> str:
    """``<img>`` of a small copy of ``c.folder/rel`` in ``assets/thumbs/``.

    The copy is remade only when the source is newer; an unreadable source
    gives a placeholder.
    """
    source = _resolve(c.folder, rel)
    if source is None:
        return _missing(rel, c.folder, missing)
    thumb = run_dir / "assets" / "thumbs" / f"{c.index:04d}.png"
    if not thumb.is_file() or thumb.stat().st_mtime <= source.stat().st_mtime:
        try:
            with Image.open(source) as image:
                image.load()
                small = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        except (OSError, ValueError) as err:
            _logger.warning("cannot read image %s: %s", source, err)
            return _missing(rel, c.folder, missing)
        small.thumbnail((THUMB_SIZE, THUMB_SIZE))
        save(small, thumb)
    return f'<img src="assets/thumbs/{c.index:04d}.png" alt="top concept of {_e(c.name)}" loading="lazy">'


def _card(run_dir: Path, c: _Class, missing: list[str]) -> str:
    concepts = _concepts(c)
    top = concepts[0] if concepts else {}
    thumb = _thumbnail(run_dir, c, top.get("visualization"), missing)
    pct = _num(top.get("importance_pct"), ".0f")
    top_text = f"top concept {pct}%" if pct != _NA else "no concepts yet"
    status = c.data.get("status")
    badge = f' <span class="badge">{_e(status)}</span>' if status not in (None, "done") else ""
    search = f"{c.name} {c.index} {c.index:04d} {c.data.get('wnid') or ''}".lower()
    return (
        f'<a class="card" href="classes/{c.index:04d}/index.html" data-search="{_e(search)}">'
        f'<div class="thumb">{thumb}</div><div class="body">'
        f'<div class="name">{_e(c.name)}</div>'
        f'<div class="meta">#{c.index} &middot; {_e(top_text)}{badge}</div></div></a>'
    )


def _index_page(run_dir: Path, good: list[_Class], broken: list[_Class], missing: list[str]) -> str:
    stats = _stats(
        [
            ("classes", len(good)),
            ("concepts", sum(len(_list(c.data, "concepts")) for c in good)),
            ("images", sum(c.data.get("n_images") or 0 for c in good if isinstance(c.data.get("n_images"), int))),
            ("skipped", sum(len(_list(c.data, "skipped")) for c in good)),
        ]
        + ([("broken", len(broken))] if broken else [])
    )
    search = (
        '<div class="search"><input id="search" type="search" '
        'placeholder="Search classes by name or index" aria-label="Search classes">'
        '<span id="search-count" class="muted"></span></div>'
    )
    cards = "\n".join(_card(run_dir, c, missing) for c in good)
    body = f'{search}<div class="cards">\n{cards}\n</div>'
    if broken:
        items = "".join(f"<li><b>{c.index:04d}</b>: {_e(c.error)}</li>" for c in broken)
        body += f'<h2>Classes that could not be read</h2><ul class="broken">{items}</ul>'
    title = f"{run_dir.name} \u2014 concept-lens"
    return _page(title, f"Concepts of {run_dir.name}", body, root="", stats=stats)


def _copy_assets(run_dir: Path) -> None:
    """Copy the package's CSS/JS (``pipelines/gallery_assets``) to ``run_dir/assets``."""
    package = resources.files("pipelines").joinpath("gallery_assets")
    for name in ASSET_FILES:
        atomic_write_bytes(run_dir / "assets" / name, package.joinpath(name).read_bytes())


def _render_classes(classes: list[_Class], missing: list[str]) -> dict[int, str]:
    """Render every readable class page; a schema error marks the class broken.

    Runs again when a class turned out broken, so no page links to it.
    """
    known = {c.index for c in classes if c.error is None}
    while True:
        missing.clear()
        pages = {}
        for c in classes:
            if c.error is not None:
                continue
            try:
                pages[c.index] = _class_page(c, known, missing)
            except (TypeError, ValueError, KeyError, AttributeError) as err:
                _logger.warning("class %d has a malformed class.json: %s", c.index, err)
                c.error = f"malformed class.json: {err}"
        if set(pages) == known:
            return pages
        known = set(pages)


def build_gallery(run_dir: str | os.PathLike) -> Path:
    """Build the static gallery of a run and return the path of its index.html.

    Parameters
    ----------
    run_dir : str or PathLike
        A run folder holding ``classes/<idx:04d>/class.json`` files.

    Returns
    -------
    Path
        ``run_dir/index.html``.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a folder.
    pipelines.io.OutputNotWritableError
        If the pages cannot be written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run_dir of build_gallery must be an existing run folder; got {run_dir}. "
            f"Pass the --out folder of a finished `concept-lens run`."
        )
    classes = _read_classes(run_dir)
    _copy_assets(run_dir)
    missing: list[str] = []
    pages = _render_classes(classes, missing)
    for c in classes:
        if c.index in pages:
            atomic_write_text(c.folder / "index.html", pages[c.index])
    good = [c for c in classes if c.error is None]
    broken = [c for c in classes if c.error is not None]
    index = run_dir / "index.html"
    atomic_write_text(index, _index_page(run_dir, good, broken, missing))
    if missing:
        _logger.warning("gallery of %s: %d image(s) missing", run_dir, len(missing))
    _logger.info("gallery written to %s (%d classes, %d broken)", index, len(good), len(broken))
    return index
