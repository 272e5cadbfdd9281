"""Numeric precision: what ``auto`` means, the autocast contexts, and the precision a result
may have been rounded to."""

import pytest
import torch

from litemeta.precision import (
    PRECISIONS,
    at_least_float32,
    autocast,
    effective_precision,
    full_precision,
    grad_scaler,
    resolve_precision,
    tf32_in_effect,
)

CPU = torch.device("cpu")


def test_auto_is_fp32_on_the_cpu_and_bf16_on_a_gpu_that_has_it(monkeypatch):
    assert PRECISIONS == ("auto", "fp32", "fp16", "bf16")
    assert resolve_precision(CPU, "auto") == "fp32"
    for explicit in ("fp32", "fp16", "bf16"):
        assert resolve_precision(CPU, explicit) == explicit
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision(torch.device("cuda"), "auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision(torch.device("cuda"), "auto") == "fp32"
    with pytest.raises(ValueError, match=r"precision must be one of .*, got 'fp8'"):
        resolve_precision(CPU, "fp8")


def test_autocast_runs_matrix_products_at_the_chosen_precision():
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    with autocast(CPU, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.float32
    with autocast(CPU, "bf16"):
        product = a @ b
        assert product.dtype == torch.bfloat16
        with full_precision(CPU):  # statistics stay in float32 inside autocast
            exact = a @ b
        assert exact.dtype == torch.float32
    torch.testing.assert_close(exact, a @ b)
    torch.testing.assert_close(product.float(), a @ b, rtol=2e-2, atol=5e-2)
    with pytest.raises(ValueError, match=r"'fp16' needs a CUDA device.*use 'bf16' or 'fp32'"):
        autocast(CPU, "fp16")


def test_loss_scaling_is_on_for_fp16_only():
    assert grad_scaler(CPU, "fp16").is_enabled()
    assert not grad_scaler(CPU, "bf16").is_enabled()
    assert not grad_scaler(CPU, "auto").is_enabled()


def test_effective_precision_names_the_lowest_rounding(monkeypatch):
    assert not tf32_in_effect(CPU)
    assert effective_precision(CPU, torch.float16) == "fp16"
    assert effective_precision(CPU, torch.bfloat16) == "bf16"
    assert effective_precision(CPU, torch.float32) == "fp32"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert effective_precision(CPU, torch.float32) == "bf16"
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert effective_precision(CPU, torch.float32) == "tf32"


def test_at_least_float32_widens_half_precision_only():
    half = torch.tensor([1.5], dtype=torch.bfloat16)
    assert at_least_float32(half).dtype == torch.float32
    assert at_least_float32(torch.tensor([1.5], dtype=torch.float16)).dtype == torch.float32
    double = torch.tensor([1.5], dtype=torch.float64)
    assert at_least_float32(double) is double
    single = torch.tensor([1.5])
    assert at_least_float32(single) is single
