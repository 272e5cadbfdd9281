"""Bytes that autograd keeps for the backward pass, counted while a step runs.

This is the memory that grows with the number of back-propagated support images, the
quantity LITE bounds (Bronskill et al., "Memory Efficient Meta-Learning with Large Images",
NeurIPS 2021). Unlike a process's resident memory it is exact and free of allocator noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["SavedTensorMeter"]


class _Held:
    """A saved tensor, released from the meter's count when autograd drops it."""

    __slots__ = ("key", "meter", "tensor")

    def __init__(self, tensor: Tensor, key: int, meter: SavedTensorMeter) -> None:
        # Detached: a node's saved output would otherwise hold its own node (a reference
        # cycle), so a retained graph would outlive its last reference until garbage
        # collection, and count as held when it is not.
        self.tensor = tensor.detach()
        self.key = key
        self.meter = meter

    def __del__(self) -> None:
        self.meter._release(self.key)


class SavedTensorMeter:
    """Live and peak bytes of the storages autograd saves for backward.

    Each storage is counted once however many saved tensors view it, from the first time it
    is saved until the last saved reference to it is dropped (when its graph is freed).
    Storages of ``exclude`` (a model's parameters and buffers) are not counted: they live
    for the whole run whatever the step does.

    Tensors saved inside :func:`torch.utils.checkpoint.checkpoint` are held by the
    checkpoint's own hooks and are not seen here; their recomputation shows in the peak of
    the process or device memory instead.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._excluded = {tensor.untyped_storage().data_ptr() for tensor in exclude}
        self._references: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    @contextmanager
    def watching(self) -> Iterator[SavedTensorMeter]:
        """Count the tensors saved for backward inside this block."""
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self

    def _pack(self, tensor: Tensor) -> Tensor | _Held:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self._excluded:
            return tensor
        if key not in self._references:
            self._references[key] = 0
            self._sizes[key] = storage.nbytes()
            self.current_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._references[key] += 1
        return _Held(tensor, key, self)

    @staticmethod
    def _unpack(packed: Tensor | _Held) -> Tensor:
        return packed.tensor if isinstance(packed, _Held) else packed

    def _release(self, key: int) -> None:
        self._references[key] -= 1
        if self._references[key] == 0:
            del self._references[key]
            self.current_bytes -= self._sizes.pop(key)
