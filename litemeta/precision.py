"""Numeric precision of the forward pass: fp32, or mixed precision with fp16 / bf16 autocast.

``auto`` is bf16 autocast on a CUDA GPU that supports it (Tensor Core speed, half the
activation memory; the learners keep their statistics in float32) and fp32 elsewhere (CPUs
without bf16 units gain nothing from it).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = [
    "PRECISIONS",
    "Precision",
    "at_least_float32",
    "autocast",
    "effective_precision",
    "full_precision",
    "grad_scaler",
    "resolve_precision",
    "tf32_in_effect",
]

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(device: torch.device, precision: Precision) -> Precision:
    """The precision that ``precision`` means on ``device`` (``auto`` resolved)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device: torch.device, precision: Precision) -> AbstractContextManager[object]:
    """A context that runs the forward pass at ``precision`` on ``device``.

    fp16 needs CUDA (it relies on loss scaling there); bf16 works on CUDA and on the CPU.
    """
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device, but training runs on {device}; "
            "use 'bf16' or 'fp32' on the CPU"
        )
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16 (avoids gradient underflow); a pass-through otherwise."""
    return torch.amp.GradScaler(device.type, enabled=resolve_precision(device, precision) == "fp16")


def full_precision(device: torch.device) -> AbstractContextManager[object]:
    """A context with autocast off on ``device``: for statistics, factorisations and solves,
    which must run in float32 whatever the forward pass's precision."""
    return torch.autocast(device.type, enabled=False)


def tf32_in_effect(device: torch.device) -> bool:
    """Whether float32 convolutions or matrix products on ``device`` may round to TF32.

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later GPUs; their
    results then depend on the batch an input is computed in (relative error ~5e-3).
    """
    if device.type != "cuda":
        return False
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    matmul = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    legacy = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    return "tf32" in (conv, matmul) or bool(legacy)


def effective_precision(device: torch.device, dtype: torch.dtype) -> str:
    """The lowest precision a ``dtype`` result computed on ``device`` may have been rounded
    to here: ``'fp16'`` / ``'bf16'`` (half-precision results or active autocast),
    ``'tf32'`` (float32 with TF32 convolutions or matrix products allowed) or ``'fp32'``."""
    halves = {torch.float16: "fp16", torch.bfloat16: "bf16"}
    if dtype in halves:
        return halves[dtype]
    if torch.is_autocast_enabled(device.type):
        return halves.get(torch.get_autocast_dtype(device.type), "fp32")
    if tf32_in_effect(device) or torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "fp32"


def at_least_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 when it is in half precision; float32 and float64 stay as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
