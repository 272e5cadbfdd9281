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


def _film_before_activation(
    module: nn.Module, args: tuple[Tensor, ...]
) -> tuple[Tensor, ...] | None:
    """Forward pre-hook on the ``drop`` layer of timm's fused norm + activation layers."""
    if module.film is None:
        return None
    return (_modulate(args[0], *module.film, module.film_channel_dim), *args[1:])


def _film_after_norm(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
    """Forward hook on a plain normalisation layer."""
    if module.film is None:
        return None
    return _modulate(output, *module.film, module.film_channel_dim)


class FilmHooks:
    """Hooks on a model's normalisation layers that apply the FiLM parameters in effect.

    Outside :meth:`applied` the hooks do nothing, so the model computes its plain output.
    The hooks are plain functions that read the parameters from the hooked module itself,
    so a deep copy of the model (with this object) modulates the copy, not the original.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = find_film_layers(model)
        modules = dict(model.named_modules())
        self._targets = [self._install(modules[layer.name], layer) for layer in self.layers]

    @staticmethod
    def _install(module: nn.Module, layer: FilmLayer) -> nn.Module:
        fused_drop = getattr(module, "drop", None)
        if isinstance(fused_drop, nn.Module):
            # timm's fused norm + activation: modulate between the norm and the activation.
            target = fused_drop
            target.register_forward_pre_hook(_film_before_activation)
        else:
            target = module
            target.register_forward_hook(_film_after_norm)
        target.film = None
        target.film_channel_dim = layer.channel_dim
        return target

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
        previous = [target.film for target in self._targets]
        pairs = film if film is not None else [None] * len(self._targets)
        for target, pair in zip(self._targets, pairs, strict=True):
            target.film = pair
        try:
            yield
        finally:
            for target, pair in zip(self._targets, previous, strict=True):
                target.film = pair
