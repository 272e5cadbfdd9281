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

What is guaranteed: unbiasedness and exact forward values, provided f acts on each row
independently and deterministically. What is not: a small variance (it grows as h
shrinks), or unbiasedness for functions that couple rows. Batch-statistics normalisation
(train-mode BatchNorm) couples rows; it is refused with an error, as is any function whose
recomputed rows disagree with the first pass (e.g. active dropout).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from litemeta.precision import effective_precision

__all__ = [
    "ROW_TOLERANCE",
    "LiteSettings",
    "RowCouplingError",
    "draw_subset",
    "lite_map",
    "row_difference",
]

SetFunction = Callable[[Tensor], Tensor]


class RowCouplingError(RuntimeError):
    """Raised when the function given to :func:`lite_map` mixes information across rows."""


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``scale`` per row."""

    @staticmethod
    def forward(ctx, values: Tensor, scale: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(scale)
        return values.view_as(values)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        scale = scale.view(-1, *([1] * (grad_output.dim() - 1)))
        # In float32 whatever the gradient's dtype: a bf16 N/h would bias every step.
        return (grad_output.float() * scale).to(grad_output.dtype), None


def draw_subset(
    num_rows: int,
    h: int,
    *,
    labels: Tensor | None = None,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw the back-propagated rows and their gradient scales.

    Returns ``(indices, scales)``: ``h`` distinct row indices drawn uniformly without
    replacement with scale ``num_rows / h`` each, or, when ``stratified``, ``h_c`` rows of
    each class c (every class gets at least one, the rest proportional to class size) with
    scale ``N_c / h_c``. Both designs make ``sum_{n in H} scale_n g_n`` unbiased for
    ``sum_n g_n``.
    """
    if not 1 <= h <= num_rows:
        raise ValueError(f"h must lie in 1..{num_rows} (the set size), got {h}")
    device = generator.device if generator is not None else None
    if not stratified:
        indices = torch.randperm(num_rows, generator=generator, device=device)[:h]
        return indices, torch.full((h,), num_rows / h, dtype=torch.float64)
    if labels is None:
        raise ValueError("stratified=True needs labels: pass the support labels")
    labels = labels.detach().cpu()
    if labels.shape != (num_rows,):
        raise ValueError(
            f"labels must have one entry per row: {num_rows} rows, labels {tuple(labels.shape)}"
        )
    classes, class_sizes = torch.unique(labels, return_counts=True)
    per_class = _allocate_per_class(class_sizes.tolist(), h)
    chosen, scales = [], []
    for label, size, take in zip(classes.tolist(), class_sizes.tolist(), per_class, strict=True):
        members = torch.nonzero(labels == label).flatten()
        picked = members[torch.randperm(size, generator=generator, device=device).cpu()[:take]]
        chosen.append(picked)
        scales.append(torch.full((take,), size / take, dtype=torch.float64))
    return torch.cat(chosen), torch.cat(scales)


def _allocate_per_class(class_sizes: list[int], h: int) -> list[int]:
    """Split ``h`` draws over classes: one each, the rest by largest remainder of size share."""
    num_classes = len(class_sizes)
    if h < num_classes:
        raise ValueError(
            f"stratified sampling needs h >= the number of classes ({num_classes}), got h={h}; "
            "raise h or use uniform sampling (stratified=False)"
        )
    total = sum(class_sizes)
    spare = h - num_classes
    room = [size - 1 for size in class_sizes]
    shares = [spare * size / total for size in class_sizes]
    extra = [min(math.floor(share), r) for share, r in zip(shares, room, strict=True)]
    leftover = spare - sum(extra)
    order = sorted(
        range(num_classes), key=lambda c: shares[c] - math.floor(shares[c]), reverse=True
    )
    while leftover > 0:
        for c in order:
            if leftover and extra[c] < room[c]:
                extra[c] += 1
                leftover -= 1
    return [1 + e for e in extra]


def _modules_of(fn: SetFunction) -> dict[nn.Module, str]:
    """Names of the modules reachable from ``fn`` (a module, or a bound method of one)."""
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    if isinstance(owner, nn.Module):
        return {module: name or type(owner).__name__ for name, module in owner.named_modules()}
    return {}


@contextmanager
def _refuse_batch_statistics(fn: SetFunction) -> Iterator[None]:
    """Raise as soon as a normalisation layer that uses batch statistics runs inside ``fn``."""
    names = _modules_of(fn)

    def check(module: nn.Module, args: tuple) -> None:
        uses_batch_stats = isinstance(module, _BatchNorm) and (
            module.training or not module.track_running_stats
        )
        if uses_batch_stats:
            name = names.get(module, type(module).__name__)
            raise RowCouplingError(
                f"module '{name}' ({type(module).__name__}) normalises with batch statistics, "
                "which couples the rows of the set, so the LITE gradient would be biased. "
                "Switch it to eval mode (module.eval(), running statistics) or replace it "
                "with a per-sample normalisation (GroupNorm, LayerNorm, InstanceNorm)."
            )

    handle = nn.modules.module.register_module_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def _map_in_chunks(
    fn: SetFunction, inputs: Tensor, chunk_size: int, *, checkpointed: bool = False
) -> Tensor:
    """``fn`` over ``chunk_size`` rows at a time; ``checkpointed`` keeps only each chunk's
    input for backward and recomputes its activations there (Chen et al., 2016)."""
    if checkpointed and torch.is_grad_enabled():
        return torch.cat(
            [checkpoint(fn, chunk, use_reentrant=False) for chunk in inputs.split(chunk_size)]
        )
    return torch.cat([fn(chunk) for chunk in inputs.split(chunk_size)])


#: Largest relative difference (per row, in norm) allowed between a row's first-pass value
#: and its recomputation, by the precision in effect. Batch-size-dependent kernels make
#: honest rows differ by up to ~1e-6 in float32, ~5e-3 with TF32 convolutions and ~1e-2 in
#: half precision; dropout (p = 0.1) moves a row by ~0.3, batch statistics by more.
ROW_TOLERANCE = {"fp32": 1e-3, "tf32": 3e-2, "fp16": 5e-2, "bf16": 1e-1}


def row_difference(first_pass: Tensor, recomputed: Tensor) -> float:
    """Largest ``||a_n - b_n|| / ||a_n||`` over the rows (in float32)."""
    a = first_pass.detach().float().flatten(1)
    b = recomputed.detach().float().flatten(1)
    scale = a.norm(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    return float(((a - b).norm(dim=1) / scale).max())


def _check_rows_agree(first_pass: Tensor, recomputed: Tensor, tolerance: float | None) -> None:
    if tolerance is None:
        precision = effective_precision(recomputed.device, recomputed.dtype)
        tolerance, source = ROW_TOLERANCE[precision], f"the {precision} precision in effect"
    else:
        source = "the row_tolerance given"
    difference = row_difference(first_pass, recomputed)
    if not difference <= tolerance:
        raise RowCouplingError(
            "the rows recomputed with autograd differ from the first pass (relative "
            f"difference {difference:.3g}, more than {tolerance:g} allowed for {source}): the "
            "function passed to lite_map is not a deterministic per-row function. Put the "
            "model in eval mode (dropout, batch statistics) before meta-training with LITE."
        )


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

    Returns:
        ``fn`` applied to every row, stacked: forward values equal the full forward; the
        gradient reaching ``fn``'s parameters (and ``inputs``, if it requires grad) is an
        unbiased estimate of the full-set gradient, exact when all rows are drawn.
    """
    num_rows = inputs.shape[0]
    if num_rows == 0:
        raise ValueError("lite_map needs a non-empty set (inputs has 0 rows)")
    chunk = chunk_size or num_rows
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    with _refuse_batch_statistics(fn):
        if h is None or h >= num_rows or not torch.is_grad_enabled():
            return _map_in_chunks(fn, inputs, chunk, checkpointed=gradient_checkpointing)
        indices, scales = draw_subset(
            num_rows, h, labels=labels, stratified=stratified, generator=generator
        )
        with torch.no_grad():
            outputs = _map_in_chunks(fn, inputs, chunk)
        if not unbiased_scaling:
            scales = torch.ones_like(scales)
        indices = indices.to(inputs.device)
        recomputed = _map_in_chunks(fn, inputs[indices], chunk, checkpointed=gradient_checkpointing)
    first_pass = outputs[indices]
    _check_rows_agree(first_pass, recomputed, row_tolerance)
    zero_valued = recomputed - recomputed.detach()
    scaled = _ScaleGradient.apply(zero_valued, scales.to(recomputed.device, torch.float32))
    return outputs.index_put((indices,), first_pass + scaled)


@dataclass
class LiteSettings:
    """How a learner maps its support set during meta-training.

    Each call of :meth:`map` draws a fresh subset, so nested set functions (CNAPs' set
    encoder, then the adapted backbone on the same support set) get independent subsets:
    the product of two estimates is unbiased only when their draws are independent.
    """

    h: int | None
    chunk_size: int | None = None
    stratified: bool = False
    generator: torch.Generator | None = None
    gradient_checkpointing: bool = False
    unbiased_scaling: bool = True
    row_tolerance: float | None = None

    def map(self, fn: SetFunction, inputs: Tensor, labels: Tensor | None = None) -> Tensor:
        """:func:`lite_map` with these settings and an independent draw."""
        return lite_map(
            fn,
            inputs,
            self.h,
            chunk_size=self.chunk_size,
            labels=labels,
            stratified=self.stratified,
            generator=self.generator,
            gradient_checkpointing=self.gradient_checkpointing,
            unbiased_scaling=self.unbiased_scaling,
            row_tolerance=self.row_tolerance,
        )
