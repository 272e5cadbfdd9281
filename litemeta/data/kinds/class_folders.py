"""Class folders (``data.dataset: folders``): ``root/<class>/<images>`` as a folder or a
zip, with optional styles and ``splits.json`` (:class:`~litemeta.data.ClassFolderDataset`).
``litemeta data info`` reads any other existing path as class folders."""

from __future__ import annotations

from pathlib import Path

from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.info import VERIFY_SIZE, class_folder_lines, verify_lines
from litemeta.data.metadataset import check_not_bare_records
from litemeta.data.registry import DatasetKind
from litemeta.data.settings import DataConfig


class ClassFoldersKind(DatasetKind):
    name = "folders"
    detect_order = 100  # the fallback: any existing path

    def collection(self, data: DataConfig, split: str, size: int | None) -> ClassFolderDataset:
        root = self.checked_root(data)
        check_not_bare_records(root)
        return ClassFolderDataset(root, split=split, on_error=data.on_error, decode_size=size)

    def detect(self, target: str) -> bool:
        return Path(target).exists()

    def describe(self, target: str, verify: bool = False) -> str:
        root = Path(target)
        check_not_bare_records(root)
        collection = ClassFolderDataset(root, decode_size=VERIFY_SIZE)
        lines = [f"class folders: {root}", *class_folder_lines(collection)]
        return "\n".join(lines + (verify_lines([collection]) if verify else []))
