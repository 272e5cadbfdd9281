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
    # One read from the device for all three checks: on a GPU each read waits for the
    # work queued before it.
    smallest, largest, empty = _label_summary(labels).tolist()
    if smallest < 0:
        raise ValueError(
            f"support_labels must lie in 0..way-1, found {smallest}: "
            "relabel the classes as 0, 1, ..., way-1"
        )
    way = largest + 1
    if empty:
        counts = torch.bincount(labels, minlength=way)
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"support_labels must cover 0..way-1 with at least one image per class: classes "
            f"{missing} have no images (labels run to {way - 1}); relabel the classes that are "
            "present as 0..way-1 or add images"
        )
    return way


def _label_summary(labels: Tensor) -> Tensor:
    """``[min, max, number of classes in 0..max without a label]``, computed on the device."""
    smallest, largest = torch.aminmax(labels)
    slots = labels.numel() + 1  # every label above n lands in the last slot
    counts = torch.zeros(slots, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(0, labels.clamp(0, slots - 1), torch.ones_like(labels))
    below_max = torch.arange(slots, device=labels.device) <= largest
    empty = ((counts == 0) & below_max).sum()
    return torch.stack([smallest, largest, empty])


def check_query(images: Tensor, support_shape: torch.Size) -> None:
    """Refuse query images whose channels or size differ from the support images'."""
    if images.dim() != 4 or images.shape[1:] != support_shape:
        raise ValueError(
            "query images must have the support images' [channels, height, width] "
            f"{tuple(support_shape)}, got {tuple(images.shape[1:])} (query shape "
            f"{tuple(images.shape)}): prepare queries exactly like the support set"
        )
