"""Checks on support and query sets, with messages that say what to fix."""

from __future__ import annotations

import torch
from torch import Tensor

from litemeta.tasks import check_labelled_images

__all__ = ["check_query", "check_support"]


def check_support(images: Tensor, labels: Tensor) -> int:
    """Validate a support set and return its way (number of classes, ``labels.max() + 1``).

    Labels must be ``int64`` in ``0..way-1`` with at least one image per class.
    """
    check_labelled_images(images, labels, "support")
    if labels.numel() == 0:
        raise ValueError("the support set is empty: every class needs at least one image")
    if labels.min() < 0:
        raise ValueError(
            f"support_labels must lie in 0..way-1, found {labels.min().item()}: "
            "relabel the classes as 0, 1, ..., way-1"
        )
    way = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=way)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"support_labels must cover 0..way-1 with at least one image per class: classes "
            f"{empty} have no images (labels run to {way - 1}); relabel the classes that are "
            "present as 0..way-1 or add images"
        )
    return way


def check_query(images: Tensor, support_shape: torch.Size) -> None:
    """Refuse query images whose channels or size differ from the support images'."""
    if images.dim() != 4 or images.shape[1:] != support_shape:
        raise ValueError(
            "query images must have the support images' [channels, height, width] "
            f"{tuple(support_shape)}, got {tuple(images.shape[1:])} (query shape "
            f"{tuple(images.shape)}): prepare queries exactly like the support set"
        )
