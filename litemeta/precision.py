"""Numeric precision of the forward pass: fp32, or mixed precision with fp16 / bf16 autocast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, get_args

import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "grad_scaler"]

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast(device: torch.device, precision: Precision) -> AbstractContextManager[object]:
    """A context that runs the forward pass at ``precision`` on ``device``.

    fp16 needs CUDA (it relies on loss scaling there); bf16 works on CUDA and on the CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
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
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
