"""Frozen layers back-propagate to their input without keeping it: same gradients, fewer bytes."""

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from litemeta.backbones import Backbone, create_backbone
from litemeta.backbones.frozen_layers import FrozenLayerBackward
from litemeta.bench.saved_tensors import SavedTensorMeter


def frozen_stack() -> nn.Sequential:
    """Convolutions of every kind the backbones use (strided, padded, depthwise, dilated,
    with bias) and eval-mode batch norms with and without affine parameters, frozen."""
    torch.manual_seed(0)
    stack = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False),
        nn.BatchNorm2d(8, affine=False),
        nn.ReLU6(),
        nn.Conv2d(8, 4, 1, bias=True),
        nn.Conv2d(4, 4, 3, padding="same"),
    ).double()
    for module in stack.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            if module.affine:
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.5, 0.5)
    return stack.eval().requires_grad_(False)


def input_and_film_gradients(stack: nn.Module, lean: bool) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    gamma = torch.linspace(0.5, 1.5, 8, dtype=torch.float64).requires_grad_()
    with FrozenLayerBackward() if lean else nullcontext():
        hidden = stack[:2](images) * gamma.view(1, -1, 1, 1)  # a trained FiLM-like scale
        output = stack[2:](hidden)
    weights = torch.linspace(-1, 1, output.numel(), dtype=torch.float64).view_as(output)
    return (output, *torch.autograd.grad((output * weights).sum(), (images, gamma)))


def test_gradients_and_outputs_equal_plain_autograd():
    stack = frozen_stack()
    plain = input_and_film_gradients(stack, lean=False)
    lean = input_and_film_gradients(stack, lean=True)
    assert torch.equal(lean[0], plain[0])  # the same functions compute the forward pass
    for lean_grad, plain_grad in zip(lean[1:], plain[1:], strict=True):
        torch.testing.assert_close(lean_grad, plain_grad, rtol=1e-12, atol=1e-12)


def test_only_the_activation_input_is_kept_for_backward():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False).eval().requires_grad_(False)
    norm = nn.BatchNorm2d(8).eval().requires_grad_(False)
    images = torch.randn(2, 3, 10, 10, requires_grad=True)

    def saved_bytes(lean: bool) -> int:
        meter = SavedTensorMeter(exclude=[*conv.parameters(), *norm.parameters(), *norm.buffers()])
        with meter.watching(), FrozenLayerBackward() if lean else nullcontext():
            F.relu6(norm(conv(images)))
        return meter.peak_bytes

    activation = 2 * 8 * 10 * 10 * 4  # float32 [2, 8, 10, 10]
    # Plain autograd keeps the convolution's input, the norm's input and the norm's output.
    assert saved_bytes(lean=False) == 2 * 3 * 10 * 10 * 4 + 2 * activation
    # Lean: the norm's output (ReLU6's input) and the norm's 8 per-channel scales.
    assert saved_bytes(lean=True) == activation + 8 * 4


def test_trained_layers_back_propagate_as_usual():
    conv = nn.Conv2d(3, 4, 3)
    norm = nn.BatchNorm2d(4).eval()
    images = torch.randn(2, 3, 8, 8, requires_grad=True)

    def gradients(lean: bool) -> tuple[torch.Tensor, ...]:
        with FrozenLayerBackward() if lean else nullcontext():
            loss = norm(conv(images)).square().sum()
        return torch.autograd.grad(loss, (images, conv.weight, norm.weight))

    for lean_grad, plain_grad in zip(gradients(True), gradients(False), strict=True):
        torch.testing.assert_close(lean_grad, plain_grad)


def test_train_mode_batch_norm_keeps_its_batch_statistics_gradient():
    norm = nn.BatchNorm2d(4).train().requires_grad_(False)
    images = torch.randn(3, 4, 5, 5, requires_grad=True)
    with FrozenLayerBackward():
        lean = torch.autograd.grad(norm(images).pow(3).sum(), images)[0]
    plain = torch.autograd.grad(norm(images).pow(3).sum(), images)[0]
    torch.testing.assert_close(lean, plain)


def test_gradient_has_the_input_dtype_under_bf16_autocast():
    stack = frozen_stack().float()
    images = torch.randn(2, 3, 12, 12, requires_grad=True)

    def gradient(lean: bool) -> torch.Tensor:
        with (
            torch.autocast("cpu", torch.bfloat16),
            FrozenLayerBackward() if lean else nullcontext(),
        ):
            output = stack(images)
        return torch.autograd.grad(output.float().sum(), images)[0]

    lean, plain = gradient(True), gradient(False)
    assert lean.dtype == torch.float32
    torch.testing.assert_close(lean, plain, rtol=2e-2, atol=2e-2)


def test_double_backward_is_refused():
    conv = nn.Conv2d(2, 2, 3).requires_grad_(False)
    images = torch.randn(1, 2, 5, 5, requires_grad=True)
    with FrozenLayerBackward():
        output = conv(images).square().sum()
    (grad,) = torch.autograd.grad(output, images, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        grad.sum().backward()


@pytest.fixture(scope="module")
def frozen_backbone() -> Backbone:
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", image_size=32, pretrained=False)
    return backbone.requires_grad_(False)


def test_a_frozen_backbone_reaches_film_with_the_same_gradient_and_fewer_bytes(
    frozen_backbone, monkeypatch
):
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    film = [
        (torch.full((layer.channels,), 1.1).requires_grad_(), torch.zeros(layer.channels))
        for layer in frozen_backbone.film_layers
    ]

    def gammas_gradient() -> tuple[tuple[torch.Tensor, ...], int]:
        meter = SavedTensorMeter(
            exclude=[*frozen_backbone.parameters(), *frozen_backbone.buffers()]
        )
        with meter.watching():
            features = frozen_backbone(images, film)
        grads = torch.autograd.grad(features.square().sum(), [gamma for gamma, _ in film])
        return grads, meter.peak_bytes

    lean, lean_bytes = gammas_gradient()
    monkeypatch.setattr(Backbone, "_frozen_layer_backward", lambda self: nullcontext())
    plain, plain_bytes = gammas_gradient()
    for lean_grad, plain_grad in zip(lean, plain, strict=True):
        torch.testing.assert_close(lean_grad, plain_grad, rtol=1e-4, atol=1e-6)
    assert lean_bytes < 0.6 * plain_bytes


def test_a_trained_backbone_runs_without_the_mode(frozen_backbone):
    trained = create_backbone("efficientnet_lite0", image_size=32, pretrained=False)
    assert isinstance(frozen_backbone._frozen_layer_backward(), FrozenLayerBackward)
    assert not isinstance(trained._frozen_layer_backward(), FrozenLayerBackward)
    with torch.no_grad():
        assert not isinstance(frozen_backbone._frozen_layer_backward(), FrozenLayerBackward)
