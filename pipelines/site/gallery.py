"""Static HTML gallery of a run: an index of classes and one page per class.

The site opens from disk (``file://``): no server, no CDN, no network. CSS and
JS are package data (``pipelines/site/assets``) copied into
``run_dir/assets/``. Input is one ``classes/<idx:04d>/class.json`` per class
(paths inside are relative to the class folder); output is
``run_dir/index.html`` and ``run_dir/classes/<idx:04d>/index.html``.

The pages are Jinja2 templates in ``pipelines/site/templates`` (a layout, the index,
the class page and their partials), so their look changes without touching
Python. This module only gathers what they show: it reads and checks each
``class.json``, sorts the concepts, finds the images and makes thumbnails.
Autoescaping is on, so every text from ``class.json`` reaches the page as text;
links between pages use class indices, never names. Missing images are logged
and shown as placeholders; a ``class.json`` that cannot be read, or whose lists
are not lists, is listed as broken on the index and gets no page.

At ImageNet scale (1000 classes, tens of thousands of images) a rebuild stays
cheap: each class folder is listed once instead of one ``stat`` per image,
every page is rendered once and written only when its bytes changed (so a
rebuild touches only what changed), and thumbnails (small WebP copies) are
remade only when their source is newer. The index carries its search index as
one inline JSON script (index, name, wnid per class), which ``app.js`` filters
as the user types, from ``file://`` too. Numbers in BENCHMARKS.md ("1000 classes").
"""

from __future__ import annotations

import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from PIL import Image

from concepts import FIT_ON, IMPORTANT_SHARE

from ..io import atomic_write_bytes, drop_killed_writes, readable
from ..run.record import ClassRecord, RecordError
from .shared import SharedConcept, bank_directions, shared_concepts, top_pairs

_logger = logging.getLogger(__name__)

__all__ = ["build_gallery"]

ASSET_FILES = ("style.css", "index.css", "app.js")
THUMB_SIZE = 240  # px, longest side of the index thumbnails
THUMB_QUALITY = 82  # WebP quality of the thumbnails (lossy: a 240 px thumbnail, not the data)
_IO_THREADS = 4  # threads that write pages and make thumbnails while the pages render
_NA = "\u2014"  # shown for a missing number


@dataclass
class _Class:
    """One class folder: its index (from the folder name) and its record (None when broken: see ``error``)."""

    index: int
    folder: Path
    record: ClassRecord | None = None
    error: str | None = None


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
    width, height : int or None
        Pixel size, when known (the thumbnails), so the page reserves the space before the image loads.
    """

    path: str
    src: str | None = None
    file: Path | None = None
    width: int | None = None
    height: int | None = None


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
    loader=PackageLoader("pipelines.site", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters["num"] = _num
_TEMPLATES.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "ensure_ascii": False}  # compact `tojson`
_TEMPLATES.tests["numeric"] = _is_number
_TEMPLATES.globals["fit_words"] = FIT_ON  # what a bank was fitted on, in words (concepts owns the names)
_TEMPLATES.globals["important_share"] = IMPORTANT_SHARE  # a concept is important for this share of the images


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
    return _Class(index, folder, record=record)


def _read_classes(run_dir: Path) -> list[_Class]:
    root = run_dir / "classes"
    if not root.is_dir():
        return []
    with os.scandir(root) as entries:  # one listing; d_type tells folders apart without a stat each
        folders = sorted(Path(entry.path) for entry in entries if entry.is_dir())
    found = (_read_class(folder) for folder in folders)
    return sorted((c for c in found if c is not None), key=lambda c: c.index)


class _Files:
    """The files of one class folder, each sub-folder listed once: one ``scandir`` instead of a ``stat`` per image."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._listed: dict[str, frozenset[str]] = {}

    def _names(self, sub: str) -> frozenset[str]:
        if sub not in self._listed:
            try:
                with os.scandir(self.folder / sub) as entries:
                    self._listed[sub] = frozenset(entry.name for entry in entries if entry.is_file())
            except OSError:
                self._listed[sub] = frozenset()
        return self._listed[sub]

    def resolve(self, rel: str) -> str | None:
        """``rel`` as a clean POSIX path if it names an existing file inside the folder, else None.

        Plain string work (no ``pathlib`` per image): ``\\`` counts as ``/``, ``.`` and empty parts are dropped,
        and absolute paths or ``..`` parts are refused.
        """
        posix = rel.replace("\\", "/")
        parts = [part for part in posix.split("/") if part not in ("", ".")]
        if posix.startswith("/") or ".." in parts or not parts:
            return None
        if parts[-1] not in self._names("/".join(parts[:-1]) or "."):
            return None
        return "/".join(parts)


def _picture(files: _Files, rel: Any, missing: list[str]) -> _Picture | None:
    """The image ``rel`` of the class whose folder ``files`` lists; None when no path is given.

    Absolute paths and paths leaving the class folder count as missing, so a
    page never shows a file from outside its class. Missing files are logged
    and added to ``missing``.
    """
    if not isinstance(rel, str) or not rel:
        return None
    clean = files.resolve(rel)
    if clean is None:
        _logger.warning("image %s referenced by %s is missing", rel, files.folder / "class.json")
        missing.append(f"{files.folder}/{rel}")
        return _Picture(rel)
    return _Picture(rel, quote(clean), files.folder / clean)


@dataclass(frozen=True)
class _View:
    """A part of a record as a page shows it: the record part's fields, some replaced (file names by
    :class:`_Picture` objects, concepts by rank); templates read both alike, by attribute."""

    of: Any  # the record part (ClassRecord, ConceptEntry, InversionEntry)
    shown: dict[str, Any]

    def __getattr__(self, name: str) -> Any:  # only for names that are not the view's own fields
        if name.startswith("__") or "of" not in self.__dict__:  # copy/pickle probe a bare instance
            raise AttributeError(name)
        shown = self.__dict__["shown"]
        return shown[name] if name in shown else getattr(self.__dict__["of"], name)


def _record(c: _Class, missing: list[str]) -> _View:
    """The class as the templates see it: its record, with ``index`` and ``name``, concepts by rank and image
    paths turned into :class:`_Picture` objects, so that templates only present."""
    files = _Files(c.folder)

    def picture(rel: str | None) -> _Picture | None:
        return _picture(files, rel, missing)

    record = c.record
    concepts = [
        _View(concept, {
            "visualization": picture(concept.visualization),
            "visualization_alpha": picture(concept.visualization_alpha),
            "visualization_full": picture(concept.visualization_full),
            "mosaic": picture(concept.mosaic),
            "top_crops": [picture(rel) for rel in concept.top_crops],
            "maps": [picture(rel) for rel in concept.maps],
        })
        for concept in sorted(record.concepts, key=lambda concept: concept.rank)
    ]
    inversions = [_View(inversion, {"reference": picture(inversion.reference),
                                    "inversion": picture(inversion.inversion)}) for inversion in record.inversions]
    return _View(record, {
        "index": c.index,
        "name": record.class_name or f"class {c.index}",
        "concepts": concepts,
        "inversions": inversions,
        "overlays": [picture(rel) for rel in record.overlays],
    })


def _totals(records: list[_View]) -> dict[str, int]:
    """The run's counts for the index, including how often the ranking beats random order (lower AUC)."""
    curves = [r.deletion for r in records if r.deletion is not None]
    return {
        "classes": len(records),
        "concepts": sum(len(r.concepts) for r in records),
        "images": sum(r.n_images for r in records),
        "skipped": sum(len(r.skipped) for r in records),
        "deletion_classes": len(curves),
        "deletion_wins": sum(d.auc_ranking < d.auc_random_order for d in curves),
    }


def _thumbnail(run_dir: Path, record: _View, missing: list[str]) -> _Picture | None:
    """The index's picture of a class: a small WebP copy of its top concept's visualization.

    The copy (``assets/thumbs/<idx:04d>.webp``) is remade only when the source
    is newer (or the copy is unreadable); a missing or unreadable source gives the placeholder.
    """
    top = record.concepts[0].visualization if record.concepts else None
    if top is None or top.file is None:
        return top
    name = f"{record.index:04d}.webp"
    thumb, src = run_dir / "assets" / "thumbs" / name, f"assets/thumbs/{name}"
    try:
        fresh = thumb.stat().st_mtime_ns > top.file.stat().st_mtime_ns
    except OSError:
        fresh = False
    if fresh:
        try:
            with Image.open(thumb) as image:  # reads the header only
                return _Picture(top.path, src, thumb, *image.size)
        except (OSError, ValueError):
            pass  # unreadable: made again below
    try:
        with Image.open(top.file) as image:
            image.load()
            small = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (OSError, ValueError) as err:
        _logger.warning("cannot read image %s: %s", top.file, err)
        missing.append(str(top.file))
        return _Picture(top.path)
    small.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=THUMB_QUALITY, method=4)
    atomic_write_bytes(thumb, buffer.getvalue())
    thumb.with_suffix(".png").unlink(missing_ok=True)  # the PNG thumbnail of galleries built before WebP ones
    return _Picture(top.path, src, thumb, *small.size)


def _search_index(records: list[_View]) -> list[list[Any]]:
    """What the index's search looks through, in card order: ``[index, name, wnid or ""]`` per class."""
    return [[r.index, r.name, r.wnid or ""] for r in records]


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (atomically) unless the file already holds exactly these bytes; True if written."""
    drop_killed_writes(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def _copy_assets(run_dir: Path) -> int:
    """Copy the package's CSS/JS (``pipelines/site/assets``) to ``run_dir/assets``; the number of files written."""
    package = resources.files("pipelines.site").joinpath("assets")
    return sum(_write_if_changed(run_dir / "assets" / name, package.joinpath(name).read_bytes())
               for name in ASSET_FILES)


def _shared(classes: list[_Class], records: dict[int, _View]) -> dict[int, dict[int, list[SharedConcept]]]:
    """Each concept's closest concepts of other classes in the run, from the classes' banks."""
    directions, ranks = {}, {}
    for c in classes:
        record = records.get(c.index)
        w = bank_directions(c.folder) if record is not None else None
        if w is not None and len(w) == len(record.concepts):
            directions[c.index] = w
            ranks[c.index] = [0] * len(w)
            for concept in record.concepts:
                ranks[c.index][concept.concept_id] = concept.rank
    return shared_concepts(directions, ranks, {i: records[i].name for i in directions})


def build_gallery(run_dir: str | os.PathLike) -> Path:
    """Build the static gallery of a run and return the path of its index.html.

    Only pages whose content changed are written, so rebuilding a finished
    run rewrites nothing and a rerun of one class rewrites its page and the index.

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
    missing: list[str] = []
    records = {c.index: _record(c, missing) for c in classes if c.error is None}
    known, good = set(records), list(records.values())
    shared = _shared(classes, records)
    broken = [c for c in classes if c.error is not None]
    class_page, index = _TEMPLATES.get_template("class.html"), run_dir / "index.html"
    # Writes (compare, fsync, rename) wait on the disk and thumbnails (decode, encode) release the GIL, so they
    # run on a few threads while this one renders the pages; .result() passes their errors on.
    for tmp in (run_dir / "assets" / "thumbs").glob(".*.tmp"):  # a killed write of a thumbnail left it
        tmp.unlink()
    with ThreadPoolExecutor(max_workers=_IO_THREADS) as pool:
        writes = [pool.submit(_copy_assets, run_dir)]
        for c in classes:
            if c.index in known:
                page = class_page.render(cls=records[c.index], known=known, shared=shared.get(c.index, {}))
                page = readable(page).encode("utf-8")  # a non-UTF-8 file name cannot stop the gallery
                writes.append(pool.submit(_write_if_changed, c.folder / "index.html", page))
        thumbs = dict(zip(records, pool.map(lambda record: _thumbnail(run_dir, record, missing), good)))
        page = _TEMPLATES.get_template("index.html").render(
            run_name=run_dir.name, classes=good, thumbs=thumbs, broken=broken, totals=_totals(good),
            search=_search_index(good), shared_pairs=top_pairs(shared),
        )
        writes.append(pool.submit(_write_if_changed, index, readable(page).encode("utf-8")))
        written = sum(int(write.result()) for write in writes)
    if missing:
        _logger.warning("gallery of %s: %d image(s) missing", run_dir, len(missing))
    _logger.info(
        "gallery written to %s (%d classes, %d broken, %d files rewritten)", index, len(good), len(broken), written
    )
    return index
