"""Back-propagation through frozen convolutions and batch norms without keeping their inputs.

CNAPs and Simple CNAPs (Requeima et al., NeurIPS 2019; Bateni et al., CVPR 2020) meta-train
FiLM layers inside a frozen, pretrained backbone, so every meta-training pass
back-propagates through the backbone to reach the FiLM parameters. Autograd's convolution
and batch norm keep their input for backward whatever needs a gradient, but with frozen
weights only the gradient with respect to the input is needed, and that depends on the
weights alone (a convolution's is the transposed convolution of the incoming gradient; an
eval-mode batch norm's is a per-channel scale). :class:`FrozenLayerBackward` routes such
calls through autograd functions that keep only the weights, which more than halves the
activations a FiLM-adapted EfficientNet keeps for backward: under LITE (Bronskill et al.,
NeurIPS 2021) they are what a step holds beyond an inference pass. Forward results are
unchanged bit for bit: the same functions compute them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.overrides import TorchFunctionMode

__all__ = ["FrozenLayerBackward"]


class _FrozenConv2d(torch.autograd.Function):
    """``F.conv2d`` with a frozen weight and bias: backward returns the input's gradient only."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        images: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
    ) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.input_shape = images.shape
        ctx.input_dtype = images.dtype
        ctx.arguments = (stride, padding, dilation, groups)
        return F.conv2d(images, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.arguments
        grad_input = torch.nn.grad.conv2d_input(
            ctx.input_shape, weight.to(grad.dtype), grad, stride, padding, dilation, groups
        )
        return grad_input.to(ctx.input_dtype), None, None, None, None, None, None


class _FrozenBatchNorm(torch.autograd.Function):
    """Eval-mode ``F.batch_norm`` with frozen statistics and affine parameters: backward
    scales the gradient by ``weight / sqrt(running_var + eps)`` per channel."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        values: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> Tensor:
        # In float32 at least, as the batch norm kernels compute it.
        dtype = torch.promote_types(running_var.dtype, torch.float32)
        scale = torch.rsqrt(running_var.to(dtype) + eps)
        if weight is not None:
            scale = scale * weight.to(dtype)
        ctx.save_for_backward(scale)
        ctx.input_dtype = values.dtype
        return F.batch_norm(values, running_mean, running_var, weight, bias, False, 0.0, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (scale,) = ctx.saved_tensors
        shape = [1] * grad.dim()
        shape[1] = scale.numel()
        # Multiplied in float32 (type promotion) and rounded once, as the batch norm kernels do.
        grad_input = grad * scale.view(shape)
        return grad_input.to(ctx.input_dtype), None, None, None, None, None


def _frozen(*tensors: Tensor | None) -> bool:
    return not any(tensor is not None and tensor.requires_grad for tensor in tensors)


#: ``F.conv2d``'s and ``F.batch_norm``'s parameters in order, with their defaults.
_CONV2D_PARAMETERS = (
    ("input", None), ("weight", None), ("bias", None), ("stride", 1), ("padding", 0),
    ("dilation", 1), ("groups", 1),
)  # fmt: skip
_BATCH_NORM_PARAMETERS = (
    ("input", None), ("running_mean", None), ("running_var", None), ("weight", None),
    ("bias", None), ("training", False), ("momentum", 0.1), ("eps", 1e-5),
)  # fmt: skip


def _arguments(args: tuple, kwargs: dict, parameters: tuple[tuple[str, Any], ...]) -> list[Any]:
    """A call's arguments in parameter order, defaults filled in."""
    return [*args, *(kwargs.get(name, default) for name, default in parameters[len(args) :])]


class FrozenLayerBackward(TorchFunctionMode):
    """Within this mode, a 2-d convolution whose weight and bias need no gradient, and an
    eval-mode batch norm whose statistics and affine parameters need none, keep only their
    weights for backward when their input needs a gradient. Other calls run unchanged, so
    layers being trained back-propagate as usual."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d and torch.is_grad_enabled():
            values = _arguments(args, kwargs, _CONV2D_PARAMETERS)
            string_padding = isinstance(values[4], str)  # "same", "valid": not handled here
            if values[0].requires_grad and _frozen(*values[1:3]) and not string_padding:
                return _FrozenConv2d.apply(*values)
        elif func is F.batch_norm and torch.is_grad_enabled():
            images, running_mean, running_var, weight, bias, training, _, eps = _arguments(
                args, kwargs, _BATCH_NORM_PARAMETERS
            )
            if (
                images.requires_grad
                and not training
                and running_mean is not None
                and running_var is not None
                and _frozen(weight, bias)
            ):
                return _FrozenBatchNorm.apply(images, running_mean, running_var, weight, bias, eps)
        return func(*args, **kwargs)
