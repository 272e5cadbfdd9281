"""An in-memory image collection for tests: image (c, i) is a solid colour encoding c and i,
stored at ``STORED_SIZE`` px."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from litemeta.data.base import ImageCollection
from litemeta.data.images import ImageLoadError

STORED_SIZE = 8


class SyntheticCollection(ImageCollection):
    def __init__(
        self,
        counts: Sequence[int],
        styles: Sequence[Sequence[str]] | None = None,
        broken: set[tuple[int, int]] | None = None,
        on_error: str = "raise",
        decode_size: int | None = None,
    ) -> None:
        names = [f"class{c}" for c in range(len(counts))]
        super().__init__("synthetic", names, on_error, decode_size)
        self.counts = list(counts)
        self.styles_per_class = styles
        self.broken = broken or set()

    def num_items(self, class_id: int) -> int:
        return self.counts[class_id]

    def item_source(self, class_id: int, item: int) -> str:
        return f"synthetic/{class_id}/{item}"

    def item_styles(self, class_id: int) -> list[str] | None:
        return None if self.styles_per_class is None else list(self.styles_per_class[class_id])

    def read_item(self, class_id: int, item: int) -> torch.Tensor:
        if (class_id, item) in self.broken:
            raise ImageLoadError(f"cannot decode image {self.item_source(class_id, item)}")
        size = self.decode_size or STORED_SIZE
        image = torch.empty(3, size, size, dtype=torch.uint8)
        image[0], image[1], image[2] = class_id % 256, item % 256, 7
        return image
