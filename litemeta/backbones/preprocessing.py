"""Image preprocessing shared by every image model: uint8 or 0..1 float -> normalised float."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["normalise_images"]


def normalise_images(images: Tensor, image_size: int, mean: Tensor, std: Tensor) -> Tensor:
    """Resize ``[n, c, h, w]`` images to ``image_size`` squared and normalise each channel.

    ``uint8`` images are scaled from 0..255 to 0..1; floating-point images are taken to be
    in 0..1 already. Single-channel images are repeated to the three channels of ``mean``.
    Each image is processed on its own, so the result for one row never depends on others.
    """
    if images.dim() != 4:
        raise ValueError(
            f"images must be a [n, channels, height, width] tensor, got shape {tuple(images.shape)}"
        )
    channels = images.shape[1]
    if channels not in (1, mean.numel()):
        raise ValueError(
            f"images must have 1 or {mean.numel()} channels, got {channels}: pass RGB images "
            "(or grayscale, which is repeated to RGB)"
        )
    if images.dtype == torch.uint8:
        images = images.to(device=mean.device, dtype=mean.dtype) / 255.0
    elif images.is_floating_point():
        images = images.to(device=mean.device, dtype=mean.dtype)
    else:
        raise ValueError(
            f"images must be uint8 (0..255) or floating point (0..1), got {images.dtype}"
        )
    if channels == 1:
        images = images.expand(-1, mean.numel(), -1, -1)
    if images.shape[-2:] != (image_size, image_size):
        size = (image_size, image_size)
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
