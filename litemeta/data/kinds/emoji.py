"""The built-in emoji set (``data.dataset: emoji``): one class per emoji, one style per
vendor; its images share one stored size, so they are decoded at it, resized on the
model's device and kept decoded in memory by default."""

from __future__ import annotations

from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.emoji import load_emoji
from litemeta.data.info import VERIFY_SIZE, class_folder_lines, verify_lines
from litemeta.data.registry import DatasetKind
from litemeta.data.settings import DataConfig


class EmojiKind(DatasetKind):
    name = "emoji"
    decode_at_stored_size = True
    detect_order = 0

    def collection(self, data: DataConfig, split: str, size: int | None) -> ClassFolderDataset:
        """The built-in set, or a build of it at ``data.root``."""
        return load_emoji(split, data.root, on_error=data.on_error, decode_size=size)

    def detect(self, target: str) -> bool:
        return target == self.name

    def describe(self, target: str, verify: bool = False) -> str:
        collection = load_emoji(split=None, decode_size=VERIFY_SIZE)
        lines = [f"built-in emoji set ({collection.tree.root})", *class_folder_lines(collection)]
        return "\n".join(lines + (verify_lines([collection]) if verify else []))
