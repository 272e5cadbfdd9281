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

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from numbers import Integral
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from litemeta.config import RUNTIME
from litemeta.precision import effective_precision

__all__ = [
    "ROW_TOLERANCE",
    "DeferredBackward",
    "FirstPasses",
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
        return _times_scale(grad_output, scale), None


def _times_scale(gradient: Tensor, scale: Tensor) -> Tensor:
    """``gradient * scale`` in at least float32 whatever the gradient's dtype (a bf16 N/h
    would bias every step), returned in the gradient's dtype."""
    work = torch.promote_types(gradient.dtype, torch.float32)
    return (gradient.to(work) * scale.to(work)).to(gradient.dtype)


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
            advice = getattr(
                module,
                "row_coupling_advice",
                "Switch it to eval mode (module.eval(), running statistics) or replace it "
                "with a per-sample normalisation (GroupNorm, LayerNorm, InstanceNorm)",
            )
            raise RowCouplingError(
                f"module '{name}' ({type(module).__name__}) normalises with batch statistics, "
                f"which couples the rows of the set, so the LITE gradient would be biased. "
                f"{advice}."
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
    input for backward and recomputes its activations there (Chen et al., 2016).

    The first chunk runs under :func:`_refuse_batch_statistics`, which every module that
    ``fn`` calls passes through; the other chunks run the same modules without the watch,
    whose per-module hook would otherwise cost host time on every call.
    """
    outputs = []
    for position, chunk in enumerate(inputs.split(chunk_size)):
        with _refuse_batch_statistics(fn) if position == 0 else nullcontext():
            if checkpointed and torch.is_grad_enabled():
                outputs.append(checkpoint(fn, chunk, use_reentrant=False))
            else:
                outputs.append(fn(chunk))
    return torch.cat(outputs)


#: Largest relative difference (per row, in norm) allowed between a row's first-pass value
#: and its recomputation, by the precision in effect. Batch-size-dependent kernels make
#: honest rows differ by up to ~1e-6 in float32, ~5e-3 with TF32 convolutions and ~1e-2 in
#: half precision; dropout (p = 0.1) moves a row by ~0.3, batch statistics by more.
ROW_TOLERANCE = {"fp32": 1e-3, "tf32": 3e-2, "fp16": 5e-2, "bf16": 1e-1}


def _largest_row_difference(first_pass: Tensor, recomputed: Tensor) -> Tensor:
    """Largest ``||a_n - b_n|| / ||a_n||`` over the rows, in float32, on the rows' device."""
    a = first_pass.detach().float().flatten(1)
    b = recomputed.detach().float().flatten(1)
    scale = a.norm(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    return ((a - b).norm(dim=1) / scale).max()


def row_difference(first_pass: Tensor, recomputed: Tensor) -> float:
    """Largest ``||a_n - b_n|| / ||a_n||`` over the rows (in float32)."""
    return float(_largest_row_difference(first_pass, recomputed))


def _row_tolerance(recomputed: Tensor, tolerance: float | None) -> tuple[float, str]:
    """The tolerance for ``recomputed`` and where it comes from (for the error message)."""
    if tolerance is not None:
        return tolerance, "the row_tolerance given"
    precision = effective_precision(recomputed.device, recomputed.dtype)
    return ROW_TOLERANCE[precision], f"the {precision} precision in effect"


def _refuse_disagreeing_rows(difference: float, tolerance: float, source: str) -> None:
    if not math.isfinite(difference):
        raise RowCouplingError(
            f"the rows of lite_map's set function are not finite ({difference}): its inputs "
            "or parameters hold NaN or infinite values (in meta-training, usually a diverged "
            "step: lower the learning rate)"
        )
    if not difference <= tolerance:
        raise RowCouplingError(
            "the rows recomputed with autograd differ from the first pass (relative "
            f"difference {difference:.3g}, more than {tolerance:g} allowed for {source}): the "
            "function passed to lite_map is not a deterministic per-row function. Put the "
            "model in eval mode (dropout, batch statistics) before meta-training with LITE."
        )


def _check_rows_agree(first_pass: Tensor, recomputed: Tensor, tolerance: float | None) -> None:
    allowed, source = _row_tolerance(recomputed, tolerance)
    _refuse_disagreeing_rows(row_difference(first_pass, recomputed), allowed, source)


def _on_device(values: Tensor, device: torch.device) -> Tensor:
    """``values`` on ``device``; a CPU -> GPU copy goes through pinned memory without
    blocking, so it does not wait for the work already queued on the GPU."""
    if device.type == "cuda" and values.device.type == "cpu":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


@dataclass
class _DeferredRows:
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

    Pass one as ``LiteSettings.deferred``: each :func:`lite_map` then returns its first-pass
    values as a leaf tensor that collects dL/dF_n while the queries are back-propagated, and
    :meth:`backward` afterwards recomputes the drawn rows with autograd, ``chunk_size`` at a
    time, and back-propagates ``scale_n * dL/dF_n`` into each (Bronskill et al., 2021). The
    gradient is the same as with the rows spliced into the graph, but the rows' activations
    are never held together with the queries', and only one chunk of them at a time.

    The rows' agreement with the first pass is measured on the device and checked by
    :meth:`check_rows`, so that the step need not wait for the GPU to compare them.
    """

    def __init__(self) -> None:
        self._pending: list[_DeferredRows] = []
        self._differences: list[tuple[Tensor, float, str]] = []

    def add(self, rows: _DeferredRows) -> None:
        self._pending.append(rows)

    @property
    def waiting(self) -> bool:
        """Whether some map's rows still wait for :meth:`backward`."""
        return bool(self._pending)

    def take(self, fn: SetFunction) -> _DeferredRows | None:
        """Remove and return the latest rows mapped by a function equal to ``fn``, for the
        caller to recompute (see :meth:`row_gradient`); ``None`` if there are none."""
        for position in reversed(range(len(self._pending))):
            if self._pending[position].fn == fn:
                return self._pending.pop(position)
        return None

    def row_gradient(self, rows: _DeferredRows, recomputed: Tensor, start: int = 0) -> Tensor:
        """The gradient to back-propagate into ``recomputed``, the rows ``start:start + n``
        of ``rows`` recomputed with autograd: ``scale_n * dL/dF_n``, in ``recomputed``'s
        dtype. Records how far the rows moved from their first pass, for
        :meth:`check_rows`."""
        chunk = rows.indices[start : start + recomputed.shape[0]]
        allowed, source = _row_tolerance(recomputed, rows.tolerance)
        difference = _largest_row_difference(rows.outputs.detach()[chunk], recomputed)
        self._differences.append((difference, allowed, source))
        if rows.outputs.grad is None:  # the loss does not depend on this set
            return torch.zeros_like(recomputed)
        grads = rows.outputs.grad[chunk]
        scales = rows.scales[start : start + recomputed.shape[0]]
        return _times_scale(grads, scales.view(-1, *([1] * (grads.dim() - 1)))).to(recomputed.dtype)

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
            _refuse_disagreeing_rows(float(difference), allowed, source)


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
    for name, value in (("chunk_size", chunk_size), ("h", h)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
            raise TypeError(f"{name} must be a whole number or None, got {value!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(
            f"chunk_size must be positive (or None: all rows at once), got {chunk_size}"
        )
    chunk = chunk_size or num_rows
    if h is None or h >= num_rows or not torch.is_grad_enabled():
        return _map_in_chunks(fn, inputs, chunk, checkpointed=gradient_checkpointing)
    indices, scales = draw_subset(
        num_rows, h, labels=labels, stratified=stratified, generator=generator
    )
    if not unbiased_scaling:
        scales = torch.ones_like(scales)
    # Moved before the first pass is queued, so that the copy does not wait for it.
    indices = _on_device(indices, inputs.device)
    scales = _on_device(scales, inputs.device)
    with torch.no_grad():
        if first_passes is None:
            outputs = _map_in_chunks(fn, inputs, chunk)
        else:
            outputs = first_passes.get(lambda: _map_in_chunks(fn, inputs, chunk), num_rows)
    if deferred is not None:
        outputs.requires_grad_()
        drawn = inputs[indices]
        deferred.add(_DeferredRows(fn, drawn, indices, scales, outputs, chunk, row_tolerance))
        return outputs
    recomputed = _map_in_chunks(fn, inputs[indices], chunk, checkpointed=gradient_checkpointing)
    first_pass = outputs[indices]
    _check_rows_agree(first_pass, recomputed, row_tolerance)
    zero_valued = recomputed - recomputed.detach()
    scaled = _ScaleGradient.apply(zero_valued, scales.to(recomputed.device))
    return outputs.index_put((indices,), first_pass + scaled)


@dataclass
class LiteSettings:
    """LITE's settings (Bronskill et al., 2021), and how a learner maps its support set
    during meta-training. The settings are also the ``training.lite`` section of a
    training config; ``generator``, ``deferred`` and ``first_passes`` are run-time state, set
    per task.

    Args:
        h: support images back-propagated per set function; ``None``: all of them (full
            back-propagation); ``"auto"``: the largest that fits a memory budget, which the
            trainer resolves before training (:mod:`litemeta.training.memory_plan`).
        stratified: draw the subset per class (see :func:`draw_subset`).
        gradient_checkpointing: with full back-propagation, recompute each chunk's
            activations in the backward pass instead of keeping them.
        objective: the training objective (``unbiased``, ``lite_reference``,
            ``orbit_reference``: :mod:`litemeta.training.objective`); the three flags below
            left ``None`` take its values, which the trainer fills in. Unfilled, :meth:`map`
            reads ``None`` as the unbiased estimator's value.
        unbiased_scaling: ``False`` drops the N/h gradient scale, as the published
            reference code does (biased; for comparisons only).
        shared_subset: one subset for every :meth:`map` of an adaptation (drawn from a copy
            of ``generator``, which then must be set), as the reference code does; biased
            for nested set functions.
        redraw_per_query_batch: the trainer adapts again, with fresh subsets, for every
            query batch (:mod:`litemeta.training.objective`).
        row_tolerance: see :func:`lite_map` (default: by the precision in effect).
        rows_with_queries: ask :func:`litemeta.training.backward_task` to recompute the
            backbone's drawn rows in the last query batch's forward pass: one pass fewer
            (faster where kernel launches dominate, as on a GPU with small batches), but
            that batch then holds ``h`` more images' activations.
        generator: random source of the draws.
        deferred: collects every map's drawn rows, which ``deferred.backward()``
            back-propagates once the loss's gradient is known (as ``backward_task``
            does); each recomputed chunk is then back-propagated at once.
        first_passes: the first passes kept for re-adaptations to the same support set
            (see :class:`FirstPasses`).

    Each call of :meth:`map` draws a fresh subset, so nested set functions (CNAPs' set
    encoder, then the adapted backbone on the same support set) get independent subsets:
    the product of two estimates is unbiased only when their draws are independent
    (unless ``shared_subset``).
    """

    h: int | Literal["auto"] | None = 40
    objective: str = "unbiased"
    stratified: bool = False
    gradient_checkpointing: bool = False
    unbiased_scaling: bool | None = None
    shared_subset: bool | None = None
    redraw_per_query_batch: bool | None = None
    row_tolerance: float | None = None
    rows_with_queries: bool = False
    generator: torch.Generator | None = field(default=None, metadata=RUNTIME)
    deferred: DeferredBackward | None = field(default=None, metadata=RUNTIME)
    first_passes: FirstPasses | None = field(default=None, metadata=RUNTIME)

    def map(
        self,
        fn: SetFunction,
        inputs: Tensor,
        labels: Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> Tensor:
        """:func:`lite_map` with these settings and an independent draw (with
        ``shared_subset``, the draw of every other map of these settings); ``chunk_size``
        rows per forward call (the learner's)."""
        if self.h == "auto":
            raise ValueError(
                "h='auto' must be resolved to a number before a support set is mapped: "
                "litemeta.training.memory_plan.plan_training does it (the trainer calls it)"
            )
        generator = self.generator
        if self.shared_subset:
            if generator is None:
                raise ValueError(
                    "shared_subset=True draws every map's subset from a copy of the generator: "
                    "set LiteSettings.generator (a fresh one for each adaptation)"
                )
            generator = torch.Generator(generator.device).set_state(generator.get_state())
        return lite_map(
            fn,
            inputs,
            self.h,
            chunk_size=chunk_size,
            labels=labels,
            stratified=self.stratified,
            generator=generator,
            gradient_checkpointing=self.gradient_checkpointing,
            unbiased_scaling=self.unbiased_scaling is not False,
            row_tolerance=self.row_tolerance,
            deferred=self.deferred,
            first_passes=self.first_passes,
        )
