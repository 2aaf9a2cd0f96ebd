"""The one module through which the project writes files.

Every write goes to a temporary file in the destination's own directory, is
flushed and ``fsync``-ed, then renamed over the destination with
:func:`os.replace`. A reader therefore sees either the old file or the new
one, never half of one, and a crash leaves no partial output behind (at most
a ``.<name>.*.tmp`` file, removed on any error we can catch).

:func:`save` picks a writer from the file extension through the ``SAVERS``
dict, as lucid's ``misc/io/saving.py`` does; an unknown extension raises a
``ValueError`` listing the supported ones. Pickle is not supported on purpose.
:func:`to_pil` is the project's one conversion of tensors and arrays to 8-bit
pictures; the PNG writer, the mosaics and the benchmark sheets use it.
"""

from __future__ import annotations

import errno
import glob
import io
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

_logger = logging.getLogger(__name__)

__all__ = [
    "OutputNotWritableError",
    "SAVERS",
    "WEBP_QUALITY",
    "atomic_write_bytes",
    "atomic_write_text",
    "drop_killed_writes",
    "ensure_dir",
    "ensure_writable",
    "full_disk_error",
    "json_text",
    "load_json",
    "readable",
    "save",
    "supported_extensions",
    "to_pil",
]


class OutputNotWritableError(PermissionError):
    """An output folder cannot be created or written to."""


_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _not_writable(directory: Path, err: OSError) -> OutputNotWritableError:
    """The error for an output folder that cannot be created or written to."""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = f"a part of the path is a file, not a folder ({reason})"
    return OutputNotWritableError(f"output folder {directory} is not writable: {reason}; choose another --out")


def _full_disk(path: Path | None, err: OSError) -> OutputNotWritableError:
    """The error for a write that found its disk or quota full: the file (when known), and the fix."""
    where = "a file" if path is None else f"{path}"
    of = "" if path is None else f" of {path.parent}"
    return OutputNotWritableError(
        f"cannot write {where}: {err.strerror or err} (the disk or quota{of} is full); "
        "free some space or choose another --out"
    )


def full_disk_error(err: BaseException) -> OutputNotWritableError | None:
    """``err`` as :class:`OutputNotWritableError` when it says a disk or quota is full, else None.

    The writers of ``maco`` and ``concepts`` raise a plain ``OSError`` naming the file; a run must stop on it with
    the fix (a full disk fails every class after it) rather than record one failed class and go on.
    """
    if isinstance(err, OutputNotWritableError) or not isinstance(err, OSError) or err.errno not in _DISK_FULL:
        return None
    return _full_disk(Path(err.filename) if err.filename else None, err)


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) or raise a clear error naming it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno in _NOT_WRITABLE:
            raise _not_writable(directory, err) from err
        raise
    if not directory.is_dir():
        raise _not_writable(directory, NotADirectoryError(errno.ENOTDIR, "not a folder"))


def ensure_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` and check that a file can be written in it, before any long work starts."""
    directory = Path(directory)
    ensure_dir(directory)
    try:  # a name of its own: the ranks of a torchrun job check the same folder at the same time
        fd, name = tempfile.mkstemp(dir=directory, prefix=".write-check.", suffix=".tmp")
    except OSError as err:
        raise _not_writable(directory, err) from err
    os.close(fd)
    os.unlink(name)
    return directory


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so the rename itself is durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Call ``write(binary_file)`` on a temp file next to ``path``, then rename.

    If ``write`` raises, the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent
    ensure_dir(directory)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        if err.errno in _NOT_WRITABLE:
            raise _not_writable(directory, err) from err
        raise
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in _DISK_FULL:
            raise _full_disk(path, err) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    _logger.debug("wrote %s", path)
    return path


def drop_killed_writes(path: str | os.PathLike) -> None:
    """Remove the temp files that writes of ``path`` killed half-way left beside it (no process can remove its own).

    Only the writer of ``path`` may call it: a temp file of a write in progress would go too.
    """
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename).

    Parameters
    ----------
    path : str or PathLike
        Destination; missing parent folders are created.
    data : bytes
        The content.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputNotWritableError
        If the destination folder cannot be created or written to.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data of atomic_write_bytes must be bytes; got {type(data).__name__}.")
    return _atomic_write(path, lambda handle: handle.write(data))


def readable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name shown as ``\\xNN`` (valid UTF-8 to write anywhere).

    Python reads a name that is not UTF-8 (Latin-1 bytes from an archive made elsewhere) with each bad byte as a
    lone surrogate (``\\udce9`` for 0xE9), which opens the file but cannot be encoded into a page, a log or
    JSON meant for people; the bytes themselves are shown instead, e.g. ``caf\\xe9.jpg``.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name made (e.g. from JSON's \\ud800): escape it as is
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    if not isinstance(text, str):
        raise TypeError(f"text of atomic_write_text must be str; got {type(text).__name__}.")
    return atomic_write_bytes(path, text.encode("utf-8"))


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`save` (UTF-8)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# --------------------------------------------------------------------------
# Writers, one per extension.


def _json_default(obj: Any) -> Any:
    """Turn numpy scalars/arrays and paths into JSON-native values."""
    if isinstance(obj, np.generic):
        value = obj.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"NaN or infinity is not valid JSON; got {value}.")
        return value
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def json_text(obj: Any) -> str:
    """The exact text :func:`save` writes for ``obj`` as ``.json`` (keys sorted, indented, NaN refused)."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, default=_json_default) + "\n"


def _save_json(obj: Any, path: Path) -> None:
    try:
        text = json_text(obj)
    except ValueError as err:
        raise ValueError(
            f"cannot save {path.name} as JSON: {err}. Replace NaN/inf values (e.g. with None) before saving."
        ) from err
    atomic_write_text(path, text)


def to_pil(image: Any, size: int | None = None) -> Image.Image:
    """The project's one conversion of an image to 8-bit PIL, optionally resized to ``size`` x ``size``.

    PNGs, mosaics and benchmark sheets all go through it, so every picture is
    quantised the same way: floats clipped to [0, 1] (NaN as 0), scaled by 255
    and rounded; uint8 arrays kept as they are.

    Parameters
    ----------
    image : PIL image, ndarray or torch.Tensor
        A PIL image, an ``(H, W, 3|4)`` uint8 or float-in-[0, 1] array, or a
        ``(3|4, H, W)`` tensor in [0, 1] (any device or dtype).
    size : int, optional
        Side of the square result (Lanczos), or None to keep the size.

    Returns
    -------
    PIL.Image.Image
        RGB, or RGBA for 4 channels.
    """
    from PIL import Image

    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor, without importing torch here
        tensor = image.detach().cpu()
        if tensor.ndim != 3 or tensor.shape[0] not in (3, 4):
            raise ValueError(f"`image` of to_pil as a tensor must have shape (3|4, H, W); got {tuple(tensor.shape)}. "
                             "Index the batch first (image[0]).")
        image = tensor.float().permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"`image` of to_pil as an array must have shape (H, W, 3|4); got {image.shape}.")
        if image.dtype != np.uint8:
            if not np.issubdtype(image.dtype, np.floating):
                raise TypeError(f"`image` of to_pil as an array must be uint8 or float in [0, 1]; got dtype "
                                f"{image.dtype}. Divide integer images by their maximum first.")
            image = np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(image), mode="RGB" if image.shape[2] == 3 else "RGBA")
    if not isinstance(image, Image.Image):
        raise TypeError(f"`image` of to_pil must be a PIL Image, a numpy array or a torch tensor; got "
                        f"{type(image).__name__}.")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def _picture_saver(**options: Any) -> Callable[[Any, Path], None]:
    """A writer of 8-bit pictures (through :func:`to_pil`) with Pillow's ``save`` options."""

    def write(obj: Any, path: Path) -> None:
        buffer = io.BytesIO()
        to_pil(obj).save(buffer, **options)
        atomic_write_bytes(path, buffer.getvalue())

    return write


def _save_npz(obj: Any, path: Path) -> None:
    if not isinstance(obj, dict):
        raise TypeError(f"obj saved as .npz must be a dict of arrays; got {type(obj).__name__}.")
    arrays = {}
    for key, value in obj.items():
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            value = value.detach().cpu().numpy()
        arrays[str(key)] = np.asarray(value)
        if arrays[str(key)].dtype == object:
            raise TypeError(
                f"entry {key!r} saved as .npz must be a numeric array; got an object array (pickle is refused)."
            )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _save_text(obj: Any, path: Path) -> None:
    if not isinstance(obj, str):
        raise TypeError(f"obj saved as {path.suffix} must be a str; got {type(obj).__name__}.")
    atomic_write_text(path, obj)


WEBP_QUALITY = 85

SAVERS: dict[str, Callable[[Any, Path], None]] = {
    ".json": _save_json,
    ".png": _picture_saver(format="PNG", optimize=False),
    # the pages' pictures: a tenth of a PNG's bytes at no visible loss
    ".webp": _picture_saver(format="WEBP", quality=WEBP_QUALITY, method=4),
    ".npz": _save_npz,
    ".html": _save_text,
    ".txt": _save_text,
    ".css": _save_text,
    ".js": _save_text,
}


def supported_extensions() -> list[str]:
    """The extensions :func:`save` knows, sorted."""
    return sorted(SAVERS)


def save(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` to ``path`` atomically, choosing the writer by extension.

    Parameters
    ----------
    obj : object
        ``.json``: JSON-able data (keys sorted, indented, NaN refused).
        ``.png`` (lossless) and ``.webp`` (lossy, quality ``WEBP_QUALITY``):
        a PIL image, a uint8 or float-in-[0, 1] array of shape (H, W, 3|4),
        or a torch tensor of shape (3|4, H, W) in [0, 1].
        ``.npz``: a dict of arrays (compressed, no pickle).
        ``.html``, ``.txt``, ``.css``, ``.js``: a str.
    path : str or PathLike
        Destination; missing parent folders are created.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    ValueError
        For an unknown extension (the message lists the supported ones).
    OutputNotWritableError
        If the destination folder cannot be created or written to.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    saver = SAVERS.get(suffix)
    if saver is None:
        raise ValueError(
            f"path of save has an unsupported extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(supported_extensions())}."
        )
    saver(obj, path)
    return path
