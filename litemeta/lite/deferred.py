"""LITE's recomputation of the drawn rows, deferred until the loss's gradient with respect to
the set is known, and the no-grad first passes kept for re-adaptations to one support set
(Bronskill et al., NeurIPS 2021)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from litemeta.lite.rows import (
    SetFunction,
    largest_row_difference,
    refuse_disagreeing_rows,
    times_scale,
    tolerance_for,
)

__all__ = ["DeferredBackward", "DeferredRows", "FirstPasses"]


@dataclass
class DeferredRows:
    """One :func:`lite_map` call's back-propagated rows, waiting for their gradient."""

    fn: SetFunction
    inputs: Tensor  # the drawn rows' inputs
    indices: Tensor
    scales: Tensor  # float64, on the outputs' device
    outputs: Tensor  # every row's first-pass value, a leaf that collects dL/dF
    chunk_size: int
    tolerance: float | None


class DeferredBackward:
    """LITE's recomputation, deferred until the loss's gradient w.r.t. the set is known.

    Given one (a :class:`~litemeta.lite.LitePass`'s ``deferred``), each :func:`lite_map`
    returns its first-pass values as a leaf tensor that collects dL/dF_n while the queries
    are back-propagated, and
    :meth:`backward` afterwards recomputes the drawn rows with autograd, ``chunk_size`` at a
    time, and back-propagates ``scale_n * dL/dF_n`` into each (Bronskill et al., 2021). The
    gradient is the same as with the rows spliced into the graph, but the rows' activations
    are never held together with the queries', and only one chunk of them at a time.

    The rows' agreement with the first pass is measured on the device and checked by
    :meth:`check_rows`, so that the step need not wait for the GPU to compare them.
    """

    def __init__(self) -> None:
        self._pending: list[DeferredRows] = []
        self._differences: list[tuple[Tensor, float, str]] = []

    def add(self, rows: DeferredRows) -> None:
        self._pending.append(rows)

    @property
    def waiting(self) -> bool:
        """Whether some map's rows still wait for :meth:`backward`."""
        return bool(self._pending)

    def take(self, fn: SetFunction) -> DeferredRows | None:
        """Remove and return the latest rows mapped by a function equal to ``fn``, for the
        caller to recompute (see :meth:`row_gradient`); ``None`` if there are none."""
        for position in reversed(range(len(self._pending))):
            if self._pending[position].fn == fn:
                return self._pending.pop(position)
        return None

    def row_gradient(self, rows: DeferredRows, recomputed: Tensor, start: int = 0) -> Tensor:
        """The gradient to back-propagate into ``recomputed``, the rows ``start:start + n``
        of ``rows`` recomputed with autograd: ``scale_n * dL/dF_n``, in ``recomputed``'s
        dtype. Records how far the rows moved from their first pass, for
        :meth:`check_rows`."""
        chunk = rows.indices[start : start + recomputed.shape[0]]
        allowed, source = tolerance_for(recomputed, rows.tolerance)
        difference = largest_row_difference(rows.outputs.detach()[chunk], recomputed)
        self._differences.append((difference, allowed, source))
        if rows.outputs.grad is None:  # the loss does not depend on this set
            return torch.zeros_like(recomputed)
        grads = rows.outputs.grad[chunk]
        scales = rows.scales[start : start + recomputed.shape[0]]
        return times_scale(grads, scales.view(-1, *([1] * (grads.dim() - 1)))).to(recomputed.dtype)

    def backward(self) -> None:
        """Recompute and back-propagate the rows of every map, last map first (its rows'
        gradient can reach an earlier map's outputs, e.g. through generated FiLM)."""
        while self._pending:
            rows = self._pending.pop()
            if rows.outputs.grad is None:
                continue  # the loss does not depend on this set
            for start in range(0, rows.indices.numel(), rows.chunk_size):
                recomputed = rows.fn(rows.inputs[start : start + rows.chunk_size])
                # Retained: a later chunk or map may pass through the same generated tensors.
                recomputed.backward(self.row_gradient(rows, recomputed, start), retain_graph=True)
            rows.outputs.grad = None

    def row_excess(self) -> Tensor | None:
        """The largest row difference over its tolerance (> 1: refused), on the device."""
        if not self._differences:
            return None
        return torch.stack([d / allowed for d, allowed, _ in self._differences]).max()

    def check_rows(self) -> None:
        """Raise :class:`RowCouplingError` if a recomputed row disagreed with its first pass."""
        for difference, allowed, source in self._differences:
            refuse_disagreeing_rows(float(difference), allowed, source)


class FirstPasses:
    """The no-grad first passes of one adaptation's maps, kept for the next adaptations to
    the same support set while the parameters do not change (the reference code adapts
    again for every query batch and computes the rows without gradient once per task).

    The k-th map of an adaptation reuses the k-th first pass; call :meth:`rewind` before
    each adaptation.
    """

    def __init__(self) -> None:
        self._outputs: list[Tensor] = []
        self._position = 0

    def rewind(self) -> None:
        self._position = 0

    def get(self, compute: Callable[[], Tensor], num_rows: int) -> Tensor:
        """The first pass of the next map: kept, or ``compute()``d now and kept."""
        if self._position == len(self._outputs):
            self._outputs.append(compute())
        outputs = self._outputs[self._position]
        if outputs.shape[0] != num_rows:
            raise ValueError(
                f"map {self._position} of this adaptation has {num_rows} rows, its kept first "
                f"pass {outputs.shape[0]}: FirstPasses serves adaptations to one support set"
            )
        self._position += 1
        return outputs.detach()  # a new tensor: the deferred path makes it a leaf
