"""The rows of a LITE set function: mapped in chunks, scaled in the backward pass, and checked
to depend on their own input alone (Bronskill et al., NeurIPS 2021)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from litemeta.precision import effective_precision

__all__ = [
    "ROW_TOLERANCE",
    "RowCouplingError",
    "ScaleGradient",
    "SetFunction",
    "check_rows_agree",
    "largest_row_difference",
    "map_in_chunks",
    "on_device",
    "refuse_disagreeing_rows",
    "row_difference",
    "times_scale",
    "tolerance_for",
]

SetFunction = Callable[[Tensor], Tensor]


class RowCouplingError(RuntimeError):
    """Raised when the function given to :func:`lite_map` mixes information across rows."""


class ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``scale`` per row."""

    @staticmethod
    def forward(ctx, values: Tensor, scale: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(scale)
        return values.view_as(values)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        scale = scale.view(-1, *([1] * (grad_output.dim() - 1)))
        return times_scale(grad_output, scale), None


def times_scale(gradient: Tensor, scale: Tensor) -> Tensor:
    """``gradient * scale`` in at least float32 whatever the gradient's dtype (a bf16 N/h
    would bias every step), returned in the gradient's dtype."""
    work = torch.promote_types(gradient.dtype, torch.float32)
    return (gradient.to(work) * scale.to(work)).to(gradient.dtype)


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


def map_in_chunks(
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


def largest_row_difference(first_pass: Tensor, recomputed: Tensor) -> Tensor:
    """Largest ``||a_n - b_n|| / ||a_n||`` over the rows, in float32, on the rows' device."""
    a = first_pass.detach().float().flatten(1)
    b = recomputed.detach().float().flatten(1)
    scale = a.norm(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    return ((a - b).norm(dim=1) / scale).max()


def row_difference(first_pass: Tensor, recomputed: Tensor) -> float:
    """Largest ``||a_n - b_n|| / ||a_n||`` over the rows (in float32)."""
    return float(largest_row_difference(first_pass, recomputed))


def tolerance_for(recomputed: Tensor, tolerance: float | None) -> tuple[float, str]:
    """The tolerance for ``recomputed`` and where it comes from (for the error message)."""
    if tolerance is not None:
        return tolerance, "the row_tolerance given"
    precision = effective_precision(recomputed.device, recomputed.dtype)
    return ROW_TOLERANCE[precision], f"the {precision} precision in effect"


def refuse_disagreeing_rows(difference: float, tolerance: float, source: str) -> None:
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


def check_rows_agree(first_pass: Tensor, recomputed: Tensor, tolerance: float | None) -> None:
    allowed, source = tolerance_for(recomputed, tolerance)
    refuse_disagreeing_rows(row_difference(first_pass, recomputed), allowed, source)


def on_device(values: Tensor, device: torch.device) -> Tensor:
    """``values`` on ``device``; a CPU -> GPU copy goes through pinned memory without
    blocking, so it does not wait for the work already queued on the GPU."""
    if device.type == "cuda" and values.device.type == "cpu":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)
