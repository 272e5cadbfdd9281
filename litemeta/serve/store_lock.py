"""The lock file that lets one process at a time hold a store, naming its holder."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from litemeta.serve.records import StoreInUse

__all__ = ["hold"]


def hold(path: Path, holder: str) -> IO[str]:
    """The lock file ``path``, locked for this process and naming ``holder``, its process
    and machine; ``StoreInUse`` with what the file says if another one holds it. The
    operating system releases the lock when the file closes or the process ends."""
    # "a+" never truncates another holder's note; the handle lives as long as the store
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        _lock_file(handle)
    except OSError:
        handle.seek(0)
        note = handle.read()
        handle.close()
        raise StoreInUse(
            f"the store {path.parent} is in use by {_describe_holder(note)}; stop that server "
            "first, or give another store folder (--store)"
        ) from None
    handle.seek(0)
    handle.truncate()
    note = {
        "holder": holder,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    handle.write(json.dumps(note))
    handle.flush()
    return handle


def _describe_holder(note: str) -> str:
    try:
        fields = json.loads(note)
        return (
            f"{fields['holder']} (process {fields['pid']} on {fields['host']}, since "
            f"{fields['since']})"
        )
    except (ValueError, TypeError, KeyError):  # being written just now
        return "another process"


if os.name == "nt":
    import msvcrt

    def _lock_file(handle: IO[str]) -> None:
        handle.seek(2**30)  # a byte past the note, so that others can still read it
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock_file(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
