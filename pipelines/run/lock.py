"""One run folder, one writer: an exclusive lock on ``<run>/.lock``.

The lock is an ``flock`` held for the whole run by one process (rank 0 under
torchrun; the other ranks of the same job share it by waiting on rank 0's
answer). The kernel drops it when that process dies, however it dies, so a
lock left behind by a killed run is simply taken over. The file also names
its holder (pid, host, command, start time) so a second run can say who holds
the folder.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..io import ensure_dir

__all__ = ["LOCK_FILE", "RunLockedError", "check_unlocked", "lock_holder", "run_lock"]

_logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
_held: dict[Path, tuple[int, int]] = {}  # resolved run folder -> (fd, depth), so nested calls in one process share it


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


def lock_holder(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What the lock file of ``run_dir`` says about its holder (None when absent or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    return (f"process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')}: "
            f"{holder.get('command')})")


def _acquire(run_dir: Path) -> int:
    ensure_dir(run_dir)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            raise RunLockedError(
                f"run folder {run_dir} is in use by {_describe(lock_holder(run_dir))}; wait for it to finish, "
                "stop it, or choose another --out."
            ) from None
        raise
    previous = lock_holder(run_dir)
    if previous and previous.get("pid") != os.getpid():
        _logger.warning("taking over the lock of %s left by %s, which is no longer running", run_dir,
                        _describe(previous))
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:500],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
    os.fsync(fd)
    return fd


def check_unlocked(run_dir: str | os.PathLike) -> None:
    """Fail at once, naming the holder, if another process holds ``run_dir`` (a check before slow set-up).

    Only :func:`run_lock` protects a run; this lets a command refuse before it loads any weights. Under
    torchrun only rank 0 checks: the other ranks of the job share the lock rank 0 takes, so they may find it held.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return
    key = Path(run_dir).resolve()
    if key in _held or not (key / LOCK_FILE).is_file():
        return
    with run_lock(key):
        pass


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the ``with`` block; re-entrant within one process.

    Raises
    ------
    RunLockedError
        At once, naming the holder, when another live process holds it.
    """
    key = Path(run_dir).resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
    else:
        _held[key] = (_acquire(key), 1)
    try:
        yield
    finally:
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
        else:
            del _held[key]
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly (a named one: its holder died)
            os.close(fd)  # releases the flock
