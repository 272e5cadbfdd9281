"""The few-shot task record shared by the data, learner, training and evaluation layers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


def pool_clips(features: Tensor, clips: Tensor | None) -> Tensor:
    """The mean feature of each clip: ``features[clips].mean(1)`` for ``clips`` of indices
    ``[n_clips, clip_length]`` into ``features`` (``features`` itself without clips), as ORBIT
    pools the per-frame features of a clip (Massiceti et al., ICCV 2021,
    ``_pool_features``)."""
    if clips is None:
        return features
    return features[clips.to(features.device)].mean(dim=1)


def check_clips(clips: Tensor, num_images: int, name: str) -> None:
    """Raise ``ValueError`` unless ``clips`` is ``[n, length]`` int64 indices of images."""
    if clips.dim() != 2 or clips.dtype != torch.int64 or clips.shape[1] < 1:
        raise ValueError(
            f"{name}_clips must be int64 image indices [clips, clip_length], got "
            f"{clips.dtype} of shape {tuple(clips.shape)}"
        )
    if clips.numel() and (clips.min() < 0 or clips.max() >= num_images):
        raise ValueError(
            f"{name}_clips index images 0..{num_images - 1}, found "
            f"{clips.min().item()}..{clips.max().item()}"
        )


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

    ``support_clips`` and ``query_clips`` optionally group a side's images into clips:
    int64 ``[n_clips, clip_length]`` indices into its images (an image may appear in several
    clips, or twice in one). A clip's feature is the mean of its images' features
    (:func:`pool_clips`); the support classifier is built from the support clips, and each
    query clip gets one prediction, with the label (and group) of its last image. Without
    them every image is its own clip.

    ``query_misses`` counts test images left out of the query set because their class has
    no support image (a VTAB-1k class its 1,000 training images lack): evaluation scores
    each as a wrong prediction.

    ``unknown_images`` optionally holds query images of classes the task does not have
    (no labels, no clips): open-set meta-training pushes their class posterior towards
    uniform (:mod:`litemeta.training.objective`); accuracy and evaluation ignore them.
    """

    support_images: Tensor
    support_labels: Tensor
    query_images: Tensor
    query_labels: Tensor
    class_names: list[str]
    query_groups: Tensor | None = None
    support_clips: Tensor | None = None
    query_clips: Tensor | None = None
    query_misses: int = 0
    unknown_images: Tensor | None = None

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
        for name in ("query_groups", "support_clips", "query_clips", "unknown_images"):
            if getattr(self, name) is not None:
                setattr(mapped, name, function(getattr(self, name)))
        return mapped

    @property
    def query_output_labels(self) -> Tensor:
        """The label of each query prediction: per query image, or per query clip (its last
        image's)."""
        if self.query_clips is None:
            return self.query_labels
        return self.query_labels[self.query_clips[:, -1]]

    @property
    def query_output_groups(self) -> Tensor | None:
        """The group of each query prediction, like :attr:`query_output_labels`."""
        if self.query_groups is None or self.query_clips is None:
            return self.query_groups
        return self.query_groups[self.query_clips[:, -1]]

    def query_batch(self, start: int, stop: int) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(images, clips, labels)`` of query predictions ``start..stop-1``: without clips,
        those images (``clips`` is ``None``); with them, the images those clips use, and the
        clips' indices into them."""
        labels = self.query_output_labels[start:stop]
        if self.query_clips is None:
            return self.query_images[start:stop], None, labels
        used, local = torch.unique(self.query_clips[start:stop], return_inverse=True)
        return self.query_images[used], local, labels

    def query_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None, Tensor]]:
        """:meth:`query_batch` for ``batch_size`` query predictions at a time, in order."""
        for start in range(0, self.query_output_labels.shape[0], batch_size):
            yield self.query_batch(start, start + batch_size)

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
        unknown = self.unknown_images
        if unknown is not None and (
            unknown.dim() != 4 or unknown.shape[1:] != self.query_images.shape[1:]
        ):
            raise ValueError(
                "unknown_images must be [n, channels, height, width] like the query images "
                f"{tuple(self.query_images.shape[1:])}, got shape {tuple(unknown.shape)}"
            )
        if self.query_misses < 0:
            raise ValueError(f"query_misses must be >= 0, got {self.query_misses}")
        if self.query_groups is not None and self.query_groups.shape != self.query_labels.shape:
            raise ValueError(
                "query_groups must give one group id per query image: "
                f"{tuple(self.query_groups.shape)} vs {tuple(self.query_labels.shape)}"
            )
        for name in ("support", "query"):
            clips: Tensor | None = getattr(self, f"{name}_clips")
            if clips is None:
                continue
            labels = getattr(self, f"{name}_labels")
            check_clips(clips, labels.shape[0], name)
            mixed = (labels[clips] != labels[clips[:, :1]]).any(dim=1)
            if mixed.any():
                raise ValueError(
                    f"{name} clips {torch.nonzero(mixed).flatten()[:5].tolist()} mix images of "
                    "different classes; every image of a clip must carry the clip's label"
                )
