"""FiLM: a task-specific per-channel scale and shift after every normalisation layer.

Perez, Strub, de Vries, Dumoulin, Courville. "FiLM: Visual Reasoning with a General
Conditioning Layer", AAAI 2018; used on a pretrained backbone by CNAPs (Requeima et al.,
NeurIPS 2019). Generic over timm models: the normalisation layers are found by type and
hooked, so no model code is rewritten. A layer's output ``y`` becomes ``gamma * y + beta``
(before the activation of timm's fused norm-activation layers); ``gamma = 1, beta = 0``
everywhere is the plain backbone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import timm.layers
import torch
from torch import Tensor, nn

__all__ = ["FilmHooks", "FilmLayer", "FilmParameters", "find_film_layers"]

#: One ``(gamma, beta)`` pair of ``[channels]`` tensors per FiLM layer, in model order.
FilmParameters = Sequence[tuple[Tensor, Tensor]]

_CHANNEL_FIRST_LAYER_NORMS = tuple(
    getattr(timm.layers, name)
    for name in ("LayerNorm2d", "LayerNormAct2d", "LayerNorm2dFp32", "LayerNormAct2dFp32")
    if hasattr(timm.layers, name)
)


@dataclass(frozen=True)
class FilmLayer:
    """A normalisation layer that FiLM modulates: its module name and channel layout."""

    name: str
    channels: int
    channel_dim: int


def find_film_layers(model: nn.Module) -> list[FilmLayer]:
    """The 2-d batch-norm and layer-norm layers of ``model``, in module order."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            layers.append(FilmLayer(name, module.num_features, channel_dim=1))
        elif isinstance(module, nn.LayerNorm):
            channel_dim = 1 if isinstance(module, _CHANNEL_FIRST_LAYER_NORMS) else -1
            layers.append(FilmLayer(name, module.normalized_shape[-1], channel_dim))
    return layers


def _modulate(values: Tensor, gamma: Tensor, beta: Tensor, channel_dim: int) -> Tensor:
    shape = [1] * values.dim()
    shape[channel_dim] = gamma.numel()
    return values * gamma.view(shape) + beta.view(shape)


class FilmHooks:
    """Hooks on a model's normalisation layers that apply the FiLM parameters in effect.

    Outside :meth:`applied` the hooks do nothing, so the model computes its plain output.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = find_film_layers(model)
        self._active: FilmParameters | None = None
        modules = dict(model.named_modules())
        for index, layer in enumerate(self.layers):
            self._install(modules[layer.name], index, layer.channel_dim)

    def _install(self, module: nn.Module, index: int, channel_dim: int) -> None:
        fused_drop = getattr(module, "drop", None)
        if isinstance(fused_drop, nn.Module):
            # timm's fused norm + activation: modulate between the norm and the activation.
            def before_activation(
                _: nn.Module, args: tuple[Tensor, ...]
            ) -> tuple[Tensor, ...] | None:
                if self._active is None:
                    return None
                gamma, beta = self._active[index]
                return (_modulate(args[0], gamma, beta, channel_dim), *args[1:])

            fused_drop.register_forward_pre_hook(before_activation)
            return

        def after_norm(_: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
            if self._active is None:
                return None
            gamma, beta = self._active[index]
            return _modulate(output, gamma, beta, channel_dim)

        module.register_forward_hook(after_norm)

    def identity(
        self, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """FiLM parameters that leave the model unchanged (gamma = 1, beta = 0)."""
        return [
            (
                torch.ones(layer.channels, device=device, dtype=dtype),
                torch.zeros(layer.channels, device=device, dtype=dtype),
            )
            for layer in self.layers
        ]

    def check(self, film: FilmParameters) -> None:
        """Raise ``ValueError`` unless ``film`` has one ``[channels]`` pair per FiLM layer."""
        if len(film) != len(self.layers):
            raise ValueError(
                f"FiLM parameters must hold one (gamma, beta) pair per normalisation layer: "
                f"the backbone has {len(self.layers)}, got {len(film)}"
            )
        for layer, (gamma, beta) in zip(self.layers, film, strict=True):
            if gamma.shape != (layer.channels,) or beta.shape != (layer.channels,):
                raise ValueError(
                    f"FiLM parameters for layer '{layer.name}' must have shape "
                    f"({layer.channels},), got gamma {tuple(gamma.shape)} "
                    f"and beta {tuple(beta.shape)}"
                )

    @contextmanager
    def applied(self, film: FilmParameters | None) -> Iterator[None]:
        """Modulate the model with ``film`` (``None``: the plain model) inside the block."""
        if film is not None:
            self.check(film)
        previous, self._active = self._active, film
        try:
            yield
        finally:
            self._active = previous
