"""Targets for ``run_isolated`` in the isolation tests (module level, so spawn can import)."""

from __future__ import annotations

import os
import signal

MIB = 2**20


def allocate(mebibytes: int) -> dict:
    """Touch ``mebibytes`` of memory and report how much."""
    block = b"\x01" * (mebibytes * MIB)
    return {"allocated_bytes": len(block)}


def raise_memory_error() -> dict:
    raise MemoryError("no room")


def kill_self() -> dict:
    """Die the way the kernel's out-of-memory killer ends a process."""
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def exit_with(code: int) -> dict:
    os._exit(code)


def fail() -> dict:
    raise ValueError("a bug")
