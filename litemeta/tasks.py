"""The few-shot task record shared by the data, learner, training and evaluation layers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def check_labelled_images(images: Tensor, labels: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``images`` is ``[n, c, h, w]`` with ``n`` int64 labels."""
    if images.dim() != 4:
        raise ValueError(
            f"{name}_images must be [n, channels, height, width], got shape {tuple(images.shape)}"
        )
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name}_labels must be a 1-d tensor with one label per image: "
            f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}"
        )
    if labels.dtype != torch.int64:
        raise ValueError(f"{name}_labels must be int64 class indices, got {labels.dtype}")


@dataclass
class Task:
    """One few-shot classification task (an episode).

    Images are ``[n, channels, height, width]`` tensors, either ``uint8`` in 0..255 or
    floating point in 0..1; the backbone owns resizing and normalisation. Labels are
    ``int64`` in ``0..way-1``. ``query_groups`` optionally names, per query image, the
    group it came from (the video of an ORBIT frame), for video-level metrics.
    ``query_misses`` counts test images left out of the query set because their class has
    no support image (a VTAB-1k class its 1,000 training images lack): evaluation scores
    each as a wrong prediction.
    """

    support_images: Tensor
    support_labels: Tensor
    query_images: Tensor
    query_labels: Tensor
    class_names: list[str]
    query_groups: Tensor | None = None
    query_misses: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def way(self) -> int:
        return len(self.class_names)

    def to(self, device: torch.device, *, non_blocking: bool = False) -> Task:
        """The same task with its tensors on ``device``."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Task:
        """The same task in page-locked memory, for asynchronous copies to a GPU (called by
        ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda tensor: tensor.pin_memory())

    def _map(self, function: Callable[[Tensor], Tensor]) -> Task:
        # A copy, not dataclasses.replace: validating again would wait for the device.
        mapped = copy.copy(self)
        for name in ("support_images", "support_labels", "query_images", "query_labels"):
            setattr(mapped, name, function(getattr(self, name)))
        if self.query_groups is not None:
            mapped.query_groups = function(self.query_groups)
        return mapped

    def validate(self) -> None:
        """Raise ``ValueError`` saying what to fix when the task is inconsistent."""
        for name in ("support", "query"):
            images: Tensor = getattr(self, f"{name}_images")
            labels: Tensor = getattr(self, f"{name}_labels")
            check_labelled_images(images, labels, name)
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.way):
                raise ValueError(
                    f"{name}_labels must lie in 0..{self.way - 1} (one per class name); "
                    f"found {labels.min().item()}..{labels.max().item()}"
                )
        if self.support_images.shape[1:] != self.query_images.shape[1:]:
            raise ValueError(
                "support and query images must share channels and size: "
                f"{tuple(self.support_images.shape[1:])} vs {tuple(self.query_images.shape[1:])}"
            )
        present = torch.bincount(self.support_labels, minlength=self.way)
        empty = [self.class_names[c] for c in range(self.way) if present[c] == 0]
        if empty:
            raise ValueError(
                f"classes without support images: {empty}; every class needs at least one"
            )
        if self.query_misses < 0:
            raise ValueError(f"query_misses must be >= 0, got {self.query_misses}")
        if self.query_groups is not None and self.query_groups.shape != self.query_labels.shape:
            raise ValueError(
                "query_groups must give one group id per query image: "
                f"{tuple(self.query_groups.shape)} vs {tuple(self.query_labels.shape)}"
            )
