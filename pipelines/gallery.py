"""Static HTML gallery of a run: an index of classes and one page per class.

The site opens from disk (``file://``): no server, no CDN, no network. CSS and
JS are package data (``pipelines/gallery_assets``) copied into
``run_dir/assets/``. Input is one ``classes/<idx:04d>/class.json`` per class
(paths inside are relative to the class folder); output is
``run_dir/index.html`` and ``run_dir/classes/<idx:04d>/index.html``.

The pages are Jinja2 templates in ``pipelines/templates`` (a layout, the index,
the class page and their partials), so their look changes without touching
Python. This module only gathers what they show: it reads and checks each
``class.json``, sorts the concepts, finds the images and makes thumbnails.
Autoescaping is on, so every text from ``class.json`` reaches the page as text;
links between pages use class indices, never names. Missing images are logged
and shown as placeholders; a ``class.json`` that cannot be read, or whose lists
are not lists, is listed as broken on the index and gets no page.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from PIL import Image

from .io import atomic_write_bytes, atomic_write_text, save
from .record import ClassRecord, RecordError

_logger = logging.getLogger(__name__)

__all__ = ["build_gallery"]

ASSET_FILES = ("style.css", "app.js")
THUMB_SIZE = 240  # px, longest side of the index thumbnails
_NA = "\u2014"  # shown for a missing number


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


@dataclass(frozen=True)
class _Picture:
    """An image that ``class.json`` names, as the templates see it.

    Attributes
    ----------
    path : str
        The path as ``class.json`` gives it; the placeholder of a missing
        image shows it, so the reader knows which file to look for.
    src : str or None
        URL of the image relative to the page showing it; None when the file
        is missing, so that the page shows a placeholder, not a broken image.
    file : Path or None
        The file on disk (None when missing), for the index's thumbnail.
    """

    path: str
    src: str | None = None
    file: Path | None = None


def _is_number(value: Any) -> bool:
    """True for an int or float; JSON's true/false are no numbers here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any, fmt: str) -> str:
    """``value`` formatted with ``fmt``; a dash when class.json holds no number there."""
    return format(value, fmt) if _is_number(value) else _NA


# The pages' templates. PackageLoader finds them through the package, so they
# load from an installed wheel too (they are package data). Autoescaping is on
# for every template, whatever its name: all of them are HTML, and class.json
# is untrusted text. trim_blocks/lstrip_blocks let templates be indented for
# reading without tags leaving blank lines. `num` and `numeric` format and test
# numbers the way class.json needs (Jinja's `number` test takes true/false).
_TEMPLATES = Environment(
    loader=PackageLoader("pipelines", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters["num"] = _num
_TEMPLATES.tests["numeric"] = _is_number


def _read_class(folder: Path) -> _Class | None:
    """Read ``folder/class.json`` as a :class:`ClassRecord`; None when the folder is not a class folder.

    A file that cannot be read, or is not a valid record, gives a broken class (listed on the index).
    """
    meta = folder / "class.json"
    if not meta.is_file():
        return None
    try:
        index = int(folder.name)
    except ValueError:
        _logger.warning("skipping %s: folder name is not a class index", folder)
        return None
    try:
        record = ClassRecord.load(meta)
    except RecordError as err:
        _logger.warning("class %d has a malformed class.json: %s", index, err)
        return _Class(index, folder, error=f"malformed class.json: {err}")
    if record.class_index != index:
        _logger.warning("%s says class_index %r; using the folder's %d", meta, record.class_index, index)
    return _Class(index, folder, data=record.to_dict())


def _read_classes(run_dir: Path) -> list[_Class]:
    root = run_dir / "classes"
    if not root.is_dir():
        return []
    found = (_read_class(folder) for folder in sorted(root.iterdir()) if folder.is_dir())
    return sorted((c for c in found if c is not None), key=lambda c: c.index)


def _resolve(folder: Path, rel: str) -> Path | None:
    """``folder/rel`` if it is an existing file inside ``folder``, else None."""
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        return None
    target = folder.joinpath(*posix.parts)
    return target if target.is_file() else None


def _picture(folder: Path, rel: Any, missing: list[str]) -> _Picture | None:
    """The image ``rel`` of the class in ``folder``; None when no path is given.

    Absolute paths and paths leaving ``folder`` count as missing, so a page
    never shows a file from outside its class. Missing files are logged and
    added to ``missing``.
    """
    if not isinstance(rel, str) or not rel:
        return None
    source = _resolve(folder, rel)
    if source is None:
        _logger.warning("image %s referenced by %s is missing", rel, folder / "class.json")
        missing.append(f"{folder}/{rel}")
        return _Picture(rel)
    return _Picture(rel, quote(PurePosixPath(rel.replace("\\", "/")).as_posix()), source)


def _record(c: _Class, missing: list[str]) -> dict[str, Any]:
    """The class as the templates see it: the record's fields, ``index`` and ``name``, concepts by rank,
    and image paths turned into :class:`_Picture` objects, so that templates only present."""

    def picture(rel: Any) -> _Picture | None:
        return _picture(c.folder, rel, missing)

    concepts = [
        {
            **concept,
            "visualization": picture(concept["visualization"]),
            "visualization_alpha": picture(concept["visualization_alpha"]),
            "mosaic": picture(concept["mosaic"]),
            "top_crops": [picture(rel) for rel in concept["top_crops"]],
        }
        for concept in sorted(c.data["concepts"], key=lambda concept: concept["rank"])
    ]
    inversions = [
        {**inversion, "reference": picture(inversion["reference"]), "inversion": picture(inversion["inversion"])}
        for inversion in c.data["inversions"]
    ]
    return {**c.data, "index": c.index, "name": c.name, "concepts": concepts, "inversions": inversions}


def _thumbnail(run_dir: Path, record: dict[str, Any], missing: list[str]) -> _Picture | None:
    """The index's picture of a class: a small copy of its top concept's visualization.

    The copy (``assets/thumbs/<idx:04d>.png``) is remade only when the source
    is newer; a missing or unreadable source gives the placeholder.
    """
    top = record["concepts"][0]["visualization"] if record["concepts"] else None
    if top is None or top.file is None:
        return top
    thumb = run_dir / "assets" / "thumbs" / f"{record['index']:04d}.png"
    if not thumb.is_file() or thumb.stat().st_mtime <= top.file.stat().st_mtime:
        try:
            with Image.open(top.file) as image:
                image.load()
                small = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        except (OSError, ValueError) as err:
            _logger.warning("cannot read image %s: %s", top.file, err)
            missing.append(str(top.file))
            return _Picture(top.path)
        small.thumbnail((THUMB_SIZE, THUMB_SIZE))
        save(small, thumb)
    return _Picture(top.path, f"assets/thumbs/{record['index']:04d}.png", thumb)


def _copy_assets(run_dir: Path) -> None:
    """Copy the package's CSS/JS (``pipelines/gallery_assets``) to ``run_dir/assets``."""
    package = resources.files("pipelines").joinpath("gallery_assets")
    for name in ASSET_FILES:
        atomic_write_bytes(run_dir / "assets" / name, package.joinpath(name).read_bytes())


def _records(classes: list[_Class], missing: list[str]) -> dict[int, dict[str, Any]]:
    """What the templates show of each readable class, by index."""
    return {c.index: _record(c, missing) for c in classes if c.error is None}


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
    records = _records(classes, missing)
    known = set(records)
    class_page = _TEMPLATES.get_template("class.html")
    for c in classes:
        if c.index in known:
            atomic_write_text(c.folder / "index.html", class_page.render(cls=records[c.index], known=known))
    good = list(records.values())
    totals = {
        "classes": len(good),
        "concepts": sum(len(r["concepts"]) for r in good),
        "images": sum(r["n_images"] for r in good),
        "skipped": sum(len(r["skipped"]) for r in good),
    }
    thumbs = {r["index"]: _thumbnail(run_dir, r, missing) for r in good}
    broken = [c for c in classes if c.error is not None]
    index = run_dir / "index.html"
    page = _TEMPLATES.get_template("index.html").render(
        run_name=run_dir.name, classes=good, thumbs=thumbs, broken=broken, totals=totals
    )
    atomic_write_text(index, page)
    if missing:
        _logger.warning("gallery of %s: %d image(s) missing", run_dir, len(missing))
    _logger.info("gallery written to %s (%d classes, %d broken)", index, len(good), len(broken))
    return index
