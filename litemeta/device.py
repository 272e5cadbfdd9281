"""Device helpers every layer uses: choose a device, place a model on it, wait for it, time
work on it.

GPU work is queued and runs asynchronously, so a clock read right after queueing it measures
only the queueing; :class:`Stopwatch` waits for the device before every reading.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

__all__ = [
    "Stopwatch",
    "available_memory_bytes",
    "pick_device",
    "place_on_device",
    "synchronize",
]

ModuleType = TypeVar("ModuleType", bound=nn.Module)


def pick_device(local_rank: int = 0) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def available_memory_bytes(device: str = "cpu") -> int:
    """Memory that work on ``device`` may use now: free GPU memory on CUDA, else
    ``MemAvailable`` from ``/proc/meminfo``."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def synchronize(device: torch.device | None = None) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU), before reading a clock.

    ``None`` means the current CUDA device when CUDA is available (for code that does not
    know where its work runs).
    """
    if device is None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif device.type == "cuda":
        torch.cuda.synchronize(device)


def place_on_device(module: ModuleType, device: torch.device) -> ModuleType:
    """Move ``module`` to ``device`` and store its convolution weights channels-last (NHWC),
    which the activations then follow: the layout Tensor Cores convolve fastest on a GPU,
    and oneDNN on the CPU (see docs/benchmarks.md, "Channels-last on the CPU")."""
    module.to(device)
    module.to(memory_format=torch.channels_last)
    return module


class Stopwatch:
    """Seconds of work on ``device`` since the stopwatch was made.

    The device is synchronised (:func:`synchronize`) before every reading of the clock, at
    the start too, so work queued before the start is not counted and work queued before a
    reading is::

        clock = Stopwatch(device)
        step()
        seconds = clock.elapsed()
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.started = self._read()

    def _read(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the start, after waiting for the work queued so far."""
        return self._read() - self.started

    def host_elapsed(self) -> float:
        """Seconds since the start without waiting for the device: how long the host took to
        queue the work (on a GPU, less than :meth:`elapsed` when the host runs ahead)."""
        return time.perf_counter() - self.started
