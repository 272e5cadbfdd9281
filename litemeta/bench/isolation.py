"""Run one benchmark configuration in a fresh process and read its peak memory.

Peak resident memory only ever grows within a process, so every
configuration runs in its own spawned process to get a figure of its own.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Row = dict[str, Any]

#: Error texts of allocation failures: torch's CPU allocator and CUDA caching allocator.
OUT_OF_MEMORY_MARKERS = ("can't allocate memory", "CUDA out of memory")


def peak_rss_bytes() -> int:
    """This process's peak resident set size since it started its program.

    Linux's ``VmHWM`` (``/proc/self/status``) is used where available: ``ru_maxrss`` also
    keeps the peak of the forked copy of the parent from before ``exec``, so a spawned
    child would report at least its parent's resident size.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _is_out_of_memory(error: Exception) -> bool:
    """A ``MemoryError``, or an allocator's refusal (torch raises ``RuntimeError`` for it)."""
    return isinstance(error, MemoryError) or any(
        marker in str(error) for marker in OUT_OF_MEMORY_MARKERS
    )


def _child(
    target: Callable[..., Row],
    kwargs: dict[str, Any],
    connection: Connection,
    memory_limit_bytes: int | None,
) -> None:
    if memory_limit_bytes is not None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit_bytes, memory_limit_bytes))
    try:
        row = target(**kwargs)
        row["peak_rss_bytes"] = peak_rss_bytes()
        connection.send(("ok", row))
    except Exception as error:  # reported to the parent, which records it in the results
        if _is_out_of_memory(error):
            connection.send(("out of memory", {"peak_rss_bytes": peak_rss_bytes()}))
        else:
            connection.send(("error", {"error": traceback.format_exc(limit=3)}))
    finally:
        connection.close()


def run_isolated(
    target: Callable[..., Row],
    kwargs: dict[str, Any],
    *,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
) -> Row:
    """Call ``target(**kwargs)`` in a spawned process; return its row plus ``status``.

    ``status`` is ``ok``, ``out of memory`` (an allocation refused, or the process killed
    by the kernel's out-of-memory killer), ``timeout``, ``error`` or ``crashed``.
    ``memory_limit_bytes`` caps the child's data segment (``RLIMIT_DATA``), so that a step
    which outgrows the machine fails alone instead of pushing other processes out.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, kwargs, sender, memory_limit_bytes))
    process.start()
    sender.close()
    status, row = "timeout", {}
    try:
        if receiver.poll(timeout_s):
            status, row = receiver.recv()
    except EOFError:  # the process died before it could report
        status = "died"
    if process.is_alive():
        process.kill()
    process.join()
    if status == "died":
        killed = process.exitcode == -signal.SIGKILL
        status = "out of memory" if killed else f"crashed (exit code {process.exitcode})"
    return {**row, "status": status}
