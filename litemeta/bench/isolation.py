"""Run one benchmark configuration in a fresh process and read its peak memory.

Peak resident memory (``ru_maxrss``) only ever grows within a process, so every
configuration runs in its own spawned process to get a figure of its own.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

Row = dict[str, Any]


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(target: Callable[..., Row], kwargs: dict[str, Any], connection: Connection) -> None:
    try:
        row = target(**kwargs)
        row["peak_rss_bytes"] = peak_rss_bytes()
        connection.send(("ok", row))
    except MemoryError:
        connection.send(("out of memory", {}))
    except Exception:  # reported to the parent, which records it in the results
        connection.send(("error", {"error": traceback.format_exc(limit=3)}))
    finally:
        connection.close()


def run_isolated(
    target: Callable[..., Row], kwargs: dict[str, Any], *, timeout_s: float | None = None
) -> Row:
    """Call ``target(**kwargs)`` in a spawned process; return its row plus ``status``.

    ``status`` is ``ok``, ``out of memory`` (a MemoryError, or the process killed by the
    kernel's out-of-memory killer), ``timeout``, ``error`` or ``crashed``.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, kwargs, sender))
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
