"""LITE: an unbiased, memory-bounded estimate of the gradient of a set function.

Bronskill, Massiceti, Patacchiola, Hofmann, Nowozin, Turner. "Memory Efficient
Meta-Learning with Large Images", NeurIPS 2021.

For a support set x_1..x_N and per-row outputs F_n = f(x_n; theta), any loss L of the
outputs has dL/dtheta = sum_n (dL/dF_n)(dF_n/dtheta). :func:`lite_map` computes every F_n
without autograd (so memory does not grow with N), re-computes a random subset H of the
rows with autograd, and splices them into the output so that

* the forward value is exactly the full-set value (every downstream quantity, and hence
  every dL/dF_n, is exact), and
* the gradient flowing into row n in H is multiplied by N/|H| (per class N_c/h_c when
  stratified),

which makes the parameter gradient an unbiased estimate of the full gradient for any
downstream loss. Unlike the published reference code (no scaling, or the whole query loss
scaled by N/h), the scale touches only the support rows, so the estimate is exact in
expectation and equal to the full gradient when h >= N.

Given a :class:`DeferredBackward`, the recomputation waits until the loss's gradient with
respect to the outputs is known: the rows are then recomputed and back-propagated a chunk
at a time, so their activations are never held together with the query images', and
memory does not grow with ``h``.

What is guaranteed: unbiasedness and exact forward values, provided f acts on each row
independently and deterministically. What is not: a small variance (it grows as h
shrinks), or unbiasedness for functions that couple rows. Batch-statistics normalisation
(train-mode BatchNorm) couples rows; it is refused with an error, as is any function whose
recomputed rows disagree with the first pass (e.g. active dropout).
"""

from litemeta.lite.deferred import DeferredBackward, FirstPasses
from litemeta.lite.estimator import check_chunk_size, lite_map
from litemeta.lite.rows import ROW_TOLERANCE, RowCouplingError, SetFunction, row_difference
from litemeta.lite.settings import LitePass, LiteSettings
from litemeta.lite.subset import check_h, draw_subset

__all__ = [
    "ROW_TOLERANCE",
    "DeferredBackward",
    "FirstPasses",
    "LitePass",
    "LiteSettings",
    "RowCouplingError",
    "SetFunction",
    "check_chunk_size",
    "check_h",
    "draw_subset",
    "lite_map",
    "row_difference",
]
