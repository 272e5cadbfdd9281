"""One training run per output directory: a lock file held for the run's life.

Two runs writing into one directory would interleave their logs and overwrite each other's
checkpoints, and both would report success. The first run creates ``.litemeta-train.lock``
(exclusively, so only one can) holding its PID, host and start time, and removes it when it
ends, however it ends but for ``SIGKILL``. A later run into the directory is refused,
naming the holder; the lock of a process that no longer exists on this host (a killed run)
is taken over, with a warning. Within one process the lock is re-entrant (the experiment
job and the trainer it calls hold it once); under ``torchrun`` only the first process
takes it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_FILE",
    "OutputDirectoryInUse",
    "check_output_directory_free",
    "hold_output_directory",
]

LOCK_FILE = ".litemeta-train.lock"

#: A lock file without a readable holder is taken for one being written for this long,
#: then for one left by a process that died while writing it.
_WRITING_SECONDS = 10.0

#: Output directories this process holds, with how many times (the lock is re-entrant).
_HELD: dict[Path, int] = {}


class OutputDirectoryInUse(RuntimeError):
    """Another live training run holds the output directory."""


def _holder(path: Path) -> dict[str, Any] | None:
    """What the lock file at ``path`` says (pid, host, started), or ``None`` if unreadable."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("pid"), int) else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0 checks without sending; on
    Windows ``os.kill`` would end the process, so a holder there counts as alive)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _stale(path: Path, holder: dict[str, Any] | None) -> bool:
    """Whether the lock at ``path`` was left by a run that is gone."""
    if holder is None:
        try:
            return time.time() - path.stat().st_mtime > _WRITING_SECONDS
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not _alive(holder["pid"])


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "a process that did not finish writing it"
    return f"PID {holder['pid']} on host {holder.get('host')}, since {holder.get('started')}"


def check_output_directory_free(directory: str | Path) -> None:
    """Raise :class:`OutputDirectoryInUse` naming the holder if another live run holds
    ``directory``; changes nothing (a refused run must leave the directory as it was)."""
    directory = Path(directory)
    path = directory / LOCK_FILE
    if directory.resolve() in _HELD or not path.exists():
        return
    holder = _holder(path)
    if not _stale(path, holder):
        raise _in_use(directory, holder)


def _in_use(directory: Path, holder: dict[str, Any] | None) -> OutputDirectoryInUse:
    return OutputDirectoryInUse(
        f"training output directory {directory} is in use by another run "
        f"({_describe(holder)}): wait for it to end, or set another training.output_dir; "
        f"if that run is gone, delete {directory / LOCK_FILE}"
    )


def _acquire(directory: Path) -> Path:
    path = directory / LOCK_FILE
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if not _stale(path, holder):
                raise _in_use(directory, holder) from None
            warnings.warn(
                f"taking over the lock of training output directory {directory} from a run "
                f"that is gone ({_describe(holder)})",
                stacklevel=4,
            )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as stream:
            json.dump(mine, stream)
        return path
    raise _in_use(directory, _holder(path))


@contextmanager
def hold_output_directory(directory: str | Path) -> Iterator[None]:
    """Hold the lock of training output ``directory`` (created if missing, and removed
    again if the block left it empty) for the block; :class:`OutputDirectoryInUse` if
    another live run holds it."""
    directory = Path(directory)
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = _acquire(directory)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        holder = _holder(path)
        if holder is not None and holder["pid"] == os.getpid():  # not taken over since
            path.unlink(missing_ok=True)
        for folder in created:  # a run refused before writing leaves no folders behind
            try:
                folder.rmdir()
            except OSError:
                break
