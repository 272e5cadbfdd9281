"""The image collection interface every reader implements, and the pools samplers draw from."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from litemeta.data.images import (
    ImageLoadError,
    NoReplacementError,
    OnError,
    check_decode_size,
    check_on_error,
    read_image_bytes,
)


class ImageCollection(ABC):
    """Classes of images, each class an ordered list of items ``0..num_items(c)-1``.

    Readers (class folders, Meta-Dataset records, ORBIT frames, the built-in emoji set)
    subclass this; samplers only see item counts and optional per-item styles, so they
    can be tested without images.

    Images come as uint8 ``[3, H, W]`` at their stored size, or, when the collection has a
    ``decode_size``, resized to ``decode_size`` square as they are decoded (no crop, as
    Meta-Dataset's decoder does): a task's images are stacked into one tensor, so a reader
    of photos of different sizes needs one. Resizing to a model's input size is the
    backbone's job, on its device (``litemeta.backbones.preprocessing``).
    """

    def __init__(
        self,
        name: str,
        class_names: Sequence[str],
        on_error: str = "raise",
        decode_size: int | None = None,
    ) -> None:
        self.name = name
        self.class_names = list(class_names)
        self.on_error: OnError = check_on_error(on_error)
        self.decode_size = decode_size
        self._decoded: dict[tuple[int, int, int | None], Tensor] | None = None
        self._unreadable: dict[tuple[int, int, int | None], str] = {}

    @property
    def decode_size(self) -> int | None:
        """The square size images are resized to as they are decoded; ``None``: their
        stored size. It may be changed; cached images are kept per decode size."""
        return self._decode_size

    @decode_size.setter
    def decode_size(self, size: int | None) -> None:
        self._decode_size = check_decode_size(size)

    def cache_decoded(self) -> None:
        """Keep every image once decoded, so that later tasks reuse it instead of decoding
        it again. Meant for small collections (the built-in emoji set holds ~130 MB decoded
        at its stored 64 px); each DataLoader worker process keeps its own cache."""
        if self._decoded is None:
            self._decoded = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def num_items(self, class_id: int) -> int:
        """Number of images of class ``class_id``."""

    @abstractmethod
    def item_source(self, class_id: int, item: int) -> str:
        """Where an image lives (a path, or ``file#record``), for messages."""

    @abstractmethod
    def read_item(self, class_id: int, item: int) -> Tensor:
        """Decode one image to uint8 ``[3, H, W]``: its stored size, or ``decode_size``
        square when set; raise ``ImageLoadError`` naming it."""

    def item_styles(self, class_id: int) -> list[str] | None:
        """The style (domain, artist, video type) of each item of a class, if known."""
        return None

    def encoded_bytes(self, class_id: int, item: int) -> bytes:
        """The image's stored (encoded) bytes; by default the file at its ``item_source``."""
        return read_image_bytes(self.item_source(class_id, item))

    def class_size(self, class_id: int) -> tuple[int, str | None]:
        """The number of images of a class, and the error that stops all of them at once,
        if any (a reader whose classes are single files may have one)."""
        return self.num_items(class_id), None

    def styles(self) -> list[str]:
        found: set[str] = set()
        for class_id in range(self.num_classes):
            found.update(self.item_styles(class_id) or [])
        return sorted(found)

    def load_image(
        self, class_id: int, item: int, alternatives: Iterable[int] | None = None
    ) -> Tensor:
        """Load an image, applying the ``on_error`` policy (and the cache, if enabled).

        With ``on_error='skip'`` an unreadable image is reported with its path in a
        warning and the first readable image of ``alternatives`` (other items of the same
        class; default: the class's next items in turn) is used instead. A task passes
        the items of the same side that it does not already use, so a replacement never
        duplicates one of its images (see :func:`litemeta.data.episodic.load_task`).
        """
        try:
            return self._read(class_id, item)
        except ImageLoadError as error:
            if self.on_error == "raise":
                raise
            if alternatives is None:
                count = self.num_items(class_id)
                alternatives = ((item + offset) % count for offset in range(1, count))
            for other in alternatives:
                try:
                    return self._read(class_id, other)
                except ImageLoadError:
                    continue
            raise NoReplacementError(
                f"no readable image in class {self.class_names[class_id]!r} of {self.name} "
                f"to replace {self._source_or_index(class_id, item)} (a replacement must be "
                "an image of the same class and side that the task does not already use); "
                f"why it was unreadable: {error}"
            ) from error

    def _source_or_index(self, class_id: int, item: int) -> str:
        """Where the image lives, or its index where that cannot be read either (a reader
        that indexes a damaged file to find it)."""
        try:
            return self.item_source(class_id, item)
        except ImageLoadError:
            return f"image {item}"

    def _read(self, class_id: int, item: int) -> Tensor:
        """One image, from the cache when enabled; with ``on_error='skip'`` an unreadable
        one is warned about once and remembered, not read again."""
        key = (class_id, item, self.decode_size)
        if key in self._unreadable:
            raise ImageLoadError(self._unreadable[key])
        if self._decoded is not None and key in self._decoded:
            return self._decoded[key]
        try:
            image = self.read_item(class_id, item)
        except ImageLoadError as error:
            if self.on_error == "skip":
                warnings.warn(f"skipping unreadable image: {error}", stacklevel=4)
                self._unreadable[key] = str(error)
            raise
        if self._decoded is not None:
            self._decoded[key] = image
        return image


@dataclass(frozen=True)
class ClassPool:
    """The items of one class a sampler may use.

    ``support`` lists the item indices eligible for the support set. ``query`` lists
    those eligible for the query set, or is ``None`` when support and query are drawn,
    disjointly, from the same ``support`` items.
    """

    class_id: int
    name: str
    support: np.ndarray
    query: np.ndarray | None = None

    @property
    def shared(self) -> bool:
        return self.query is None


def class_pools(
    collection: ImageCollection,
    support_styles: Sequence[str] | None = None,
    query_styles: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
) -> list[ClassPool]:
    """Build the per-class pools, optionally taking support and query from given styles.

    With neither style list, support and query share each class's items. With either,
    support comes from ``support_styles`` and query from ``query_styles``; the one not
    given takes every style the other leaves out.
    """
    class_ids = range(collection.num_classes) if classes is None else classes
    use_styles = support_styles is not None or query_styles is not None
    if use_styles:
        known = collection.styles()
        if not known:
            raise ValueError(
                f"{collection.name} has no per-image styles, so support_styles/query_styles "
                "cannot be used; arrange images as <class>/<style>/<image> or drop the options"
            )
        for requested in (support_styles or [], query_styles or []):
            unknown = sorted(set(requested) - set(known))
            if unknown:
                raise ValueError(f"unknown styles {unknown}; {collection.name} has {known}")
        if support_styles is None:
            support_set = set(known) - set(query_styles or [])
        else:
            support_set = set(support_styles)
        query_set = set(query_styles) if query_styles is not None else set(known) - support_set
        overlap = sorted(support_set & query_set)
        if overlap:
            raise ValueError(
                f"styles {overlap} are in both support_styles and query_styles; each style "
                "must feed only one side so that no image is in both sets"
            )
        if not query_set:
            raise ValueError(
                "no styles left for the query set: pass query_styles, or leave some styles "
                "out of support_styles"
            )
        if not support_set:
            raise ValueError(
                "no styles left for the support set: pass support_styles, or leave some "
                "styles out of query_styles"
            )
    pools = []
    for class_id in class_ids:
        name = collection.class_names[class_id]
        count = collection.num_items(class_id)
        if not use_styles:
            pools.append(ClassPool(class_id, name, np.arange(count)))
            continue
        styles = np.asarray(collection.item_styles(class_id) or [""] * count)
        support = np.flatnonzero(np.isin(styles, list(support_set)))
        query = np.flatnonzero(np.isin(styles, list(query_set)))
        pools.append(ClassPool(class_id, name, support, query))
    return pools
