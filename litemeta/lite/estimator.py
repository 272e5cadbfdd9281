"""The LITE estimator: :func:`lite_map` (Bronskill et al., NeurIPS 2021)."""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor

from litemeta.lite.deferred import DeferredBackward, DeferredRows, FirstPasses
from litemeta.lite.rows import (
    ScaleGradient,
    SetFunction,
    check_rows_agree,
    map_in_chunks,
    on_device,
)
from litemeta.lite.subset import check_h, draw_subset

__all__ = ["check_chunk_size", "lite_map"]


def check_chunk_size(size: object, *, name: str = "chunk_size", optional: bool = False) -> None:
    """Refuse a chunk size (rows per forward call) that is not a whole number from 1 (or,
    where ``optional``, ``None``: all rows at once); ``name`` is how the message calls it."""
    if size is None and optional:
        return
    if isinstance(size, bool) or not isinstance(size, Integral):
        allowed = "a whole number or None" if optional else "a whole number"
        raise TypeError(f"{name} must be {allowed}, got {size!r}")
    if size < 1:
        alternative = " (or None: all rows at once)" if optional else ""
        raise ValueError(f"{name} must be at least 1 image{alternative}, got {size}")


def lite_map(
    fn: SetFunction,
    inputs: Tensor,
    h: int | None,
    *,
    chunk_size: int | None = None,
    labels: Tensor | None = None,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    gradient_checkpointing: bool = False,
    unbiased_scaling: bool = True,
    row_tolerance: float | None = None,
    deferred: DeferredBackward | None = None,
    first_passes: FirstPasses | None = None,
) -> Tensor:
    """Apply ``fn`` to every row of ``inputs`` with a LITE gradient (Bronskill et al., 2021).

    Args:
        fn: maps a batch ``[b, ...]`` to outputs ``[b, ...]``, row by row.
        inputs: the set, first dimension = rows (e.g. uint8 support images).
        h: number of rows back-propagated. ``None`` or ``h >= len(inputs)`` is plain full
            back-propagation.
        chunk_size: rows per forward call (default: all rows at once); bounds the memory
            of the no-grad pass.
        labels: class per row, needed when ``stratified``.
        stratified: draw rows per class (see :func:`draw_subset`).
        generator: random source for the draw, for reproducibility.
        gradient_checkpointing: recompute the back-propagated rows' activations during
            backward instead of keeping them (less memory, one more forward pass).
        unbiased_scaling: ``False`` drops the N/h (N_c/h_c) gradient scale, as the
            published reference code does; biased, kept only for comparisons.
        row_tolerance: the largest relative difference (per row, in norm) allowed between
            a recomputed row and its first-pass value before the function is refused as
            not row-wise; default from the precision in effect (:data:`ROW_TOLERANCE`:
            TF32, autocast and half-precision outputs get a looser bound than float32).
        deferred: collect the drawn rows there instead of recomputing them now; the output
            is then the first pass as a leaf, and ``deferred.backward()`` (after the loss's
            backward) completes the gradient (see :class:`DeferredBackward`).
        first_passes: take the no-grad first pass from there, computed once for all the
            adaptations to this support set (see :class:`FirstPasses`).

    Returns:
        ``fn`` applied to every row, stacked: forward values equal the full forward; the
        gradient reaching ``fn``'s parameters (and ``inputs``, if it requires grad) is an
        unbiased estimate of the full-set gradient, exact when all rows are drawn.
    """
    num_rows = inputs.shape[0]
    if num_rows == 0:
        raise ValueError("lite_map needs a non-empty set (inputs has 0 rows)")
    check_h(h)
    check_chunk_size(chunk_size, optional=True)
    chunk = chunk_size or num_rows
    if h is None or h >= num_rows or not torch.is_grad_enabled():
        return map_in_chunks(fn, inputs, chunk, checkpointed=gradient_checkpointing)
    indices, scales = draw_subset(
        num_rows, h, labels=labels, stratified=stratified, generator=generator
    )
    if not unbiased_scaling:
        scales = torch.ones_like(scales)
    # Moved before the first pass is queued, so that the copy does not wait for it.
    indices = on_device(indices, inputs.device)
    scales = on_device(scales, inputs.device)
    with torch.no_grad():
        if first_passes is None:
            outputs = map_in_chunks(fn, inputs, chunk)
        else:
            outputs = first_passes.get(lambda: map_in_chunks(fn, inputs, chunk), num_rows)
    if deferred is not None:
        outputs.requires_grad_()
        drawn = inputs[indices]
        deferred.add(DeferredRows(fn, drawn, indices, scales, outputs, chunk, row_tolerance))
        return outputs
    recomputed = map_in_chunks(fn, inputs[indices], chunk, checkpointed=gradient_checkpointing)
    first_pass = outputs[indices]
    check_rows_agree(first_pass, recomputed, row_tolerance)
    zero_valued = recomputed - recomputed.detach()
    scaled = ScaleGradient.apply(zero_valued, scales.to(recomputed.device))
    return outputs.index_put((indices,), first_pass + scaled)
