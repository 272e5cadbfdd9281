"""FiLM: a task-specific per-channel scale and shift after chosen normalisation layers.

Perez, Strub, de Vries, Dumoulin, Courville. "FiLM: Visual Reasoning with a General
Conditioning Layer", AAAI 2018; used on a pretrained backbone by CNAPs (Requeima et al.,
NeurIPS 2019) and LITE (Bronskill et al., NeurIPS 2021). The layers are found in timm models
and hooked, so no model code is rewritten. A layer's output ``y`` becomes
``gamma * y + beta`` (before the activation of timm's fused norm-activation layers);
``gamma = 1, beta = 0`` everywhere is the plain backbone.

Two placements (:data:`FILM_PLACEMENTS`):

- ``"published"``: where the publications put FiLM. EfficientNet: after the stem's batch
  norm, the batch norm of each block's depthwise convolution and the head's batch norm,
  each before its activation (LITE's ``FilmEfficientNet.extract_features`` and
  ``FilmMBConvBlock``; 18 layers in B0). ResNet with basic blocks: after ``bn1`` and
  ``bn2`` of every block (CNAPs' ``resnet.py``; 16 layers in ResNet-18). Not defined for
  other architectures.
- ``"all"``: after every 2-d batch-norm and layer-norm layer, for any timm model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import timm.layers
import torch
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import BasicBlock, ResNet
from torch import Tensor, nn

__all__ = [
    "FILM_PLACEMENTS",
    "FilmHooks",
    "FilmLayer",
    "FilmParameters",
    "FilmPlacement",
    "default_film_placement",
    "find_film_layers",
]

FilmPlacement = Literal["published", "all"]
FILM_PLACEMENTS: tuple[str, ...] = get_args(FilmPlacement)

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


def _published_norm_names(model: nn.Module) -> list[str] | None:
    """Names of the normalisation layers the publications modulate, or ``None`` when no
    placement is published for this architecture."""
    if isinstance(model, EfficientNet):
        names = ["bn1"]  # the stem's norm
        for stage_index, stage in enumerate(model.blocks):
            for block_index, block in enumerate(stage):
                # The depthwise convolution's norm: bn1 without an expansion, bn2 after one.
                if type(block) is DepthwiseSeparableConv:
                    norm = "bn1"
                elif type(block) is InvertedResidual:
                    norm = "bn2"
                else:
                    return None
                names.append(f"blocks.{stage_index}.{block_index}.{norm}")
        return [*names, "bn2"]  # the head's norm, before pooling
    if isinstance(model, ResNet):
        names = []
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for block_name, block in getattr(model, stage).named_children():
                if type(block) is not BasicBlock:
                    return None
                names += [f"{stage}.{block_name}.bn1", f"{stage}.{block_name}.bn2"]
        return names
    return None


def default_film_placement(model: nn.Module) -> FilmPlacement:
    """``"published"`` where the publications define a placement for ``model``, else ``"all"``."""
    return "published" if _published_norm_names(model) is not None else "all"


def find_film_layers(model: nn.Module, placement: FilmPlacement = "all") -> list[FilmLayer]:
    """The normalisation layers of ``model`` that FiLM modulates under ``placement``, in
    module order."""
    if placement not in FILM_PLACEMENTS:
        raise ValueError(f"film placement must be one of {FILM_PLACEMENTS}, got {placement!r}")
    chosen: set[str] | None = None
    if placement == "published":
        published = _published_norm_names(model)
        if published is None:
            raise ValueError(
                f"no published FiLM placement is defined for {type(model).__name__} (only for "
                "EfficientNets of depthwise-separable and inverted-residual blocks and ResNets "
                "of basic blocks): use film placement 'all' (every normalisation layer)"
            )
        chosen = set(published)
    layers = []
    for name, module in model.named_modules():
        if chosen is not None and name not in chosen:
            continue
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

    def __init__(self, model: nn.Module, placement: FilmPlacement = "all") -> None:
        self.placement = placement
        self.layers = find_film_layers(model, placement)
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
                f"FiLM parameters must hold one (gamma, beta) pair per FiLM layer: the "
                f"backbone has {len(self.layers)} (placement '{self.placement}'), got {len(film)}"
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
