"""Class-folder image collections, from a directory or a zip archive.

Layout: ``root/<class>/<image>`` or, with a style (domain, artist) per image,
``root/<class>/<style>/<image>``. An optional ``splits.json`` at the root maps split
names to class lists, e.g. ``{"train": [...], "validation": [...], "test": [...]}``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from torch import Tensor

from litemeta.data.base import ImageCollection
from litemeta.data.images import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    check_image_bytes,
    decode_image,
    read_image_bytes,
)

SPLITS_FILE = "splits.json"
StyleRule = str | Callable[[str], str | None]
"""``'auto'`` (a sub-folder under the class is the style), ``'none'``, a regular
expression with a ``style`` group matched against the file name, or a function of the
file name."""


class FileTree:
    """Read-only files of a directory or a zip archive, addressed by posix relative path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(
                f"dataset root {self.root} does not exist; check the path (a directory of "
                "class folders or a .zip of them)"
            )
        self.is_zip = self.root.is_file() and zipfile.is_zipfile(self.root)
        if self.root.is_file() and not self.is_zip:
            raise ValueError(f"{self.root} is a file but not a zip archive of class folders")
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1

    def files(self) -> list[str]:
        """Every file's relative path, sorted; hidden files and folders (a name starting with
        a dot, e.g. macOS's ``.DS_Store`` and ``._*``) and ``__MACOSX`` folders are left out,
        and symbolic links to folders are followed (each folder once)."""
        if self.is_zip:
            with zipfile.ZipFile(self.root) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
            return sorted(n for n in names if not any(map(hidden_name, n.split("/"))))
        found, seen = [], set()
        for directory, subdirs, names in os.walk(self.root, followlinks=True):
            status = os.stat(directory)
            if (status.st_dev, status.st_ino) in seen:  # a link back to a folder above
                subdirs[:] = []
                continue
            seen.add((status.st_dev, status.st_ino))
            subdirs[:] = sorted(d for d in subdirs if not hidden_name(d))
            relative = Path(directory).relative_to(self.root)
            found.extend((relative / n).as_posix() for n in names if not hidden_name(n))
        return sorted(found)

    def describe(self, relative: str) -> str:
        return f"{self.root}!{relative}" if self.is_zip else str(self.root / relative)

    def read(self, relative: str) -> bytes:
        try:
            if not self.is_zip:
                return read_image_bytes(self.root / relative)
            # One handle per process: DataLoader workers must not share a file offset.
            if self._zip is None or self._zip_pid != os.getpid():
                self._zip = zipfile.ZipFile(self.root)
                self._zip_pid = os.getpid()
            check_image_bytes(self._zip.getinfo(relative).file_size, self.describe(relative))
            return self._zip.read(relative)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise ImageLoadError(f"cannot read image {self.describe(relative)}: {error}") from error

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zip"], state["_zip_pid"] = None, -1
        return state


def hidden_name(name: str) -> bool:
    """A file or folder that no dataset means to hold: hidden, or macOS's archive metadata."""
    return name.startswith(".") or name == "__MACOSX"


def _style_function(rule: StyleRule) -> Callable[[PurePosixPath], str | None]:
    if callable(rule):
        return lambda path: rule(path.name)
    if rule == "none":
        return lambda path: None
    if rule == "auto":
        return lambda path: path.parts[1] if len(path.parts) > 2 else None
    pattern = re.compile(rule)
    if "style" not in pattern.groupindex:
        raise ValueError(f"style rule {rule!r} needs a named group (?P<style>...)")

    def from_name(path: PurePosixPath) -> str | None:
        match = pattern.search(path.name)
        return match.group("style") if match else None

    return from_name


def read_splits(
    tree: FileTree, files: list[str], splits_file: str | os.PathLike[str] | None
) -> dict[str, list]:
    """Read a ``{split: [class, ...]}`` JSON file (default: ``splits.json`` in the root)."""
    try:
        if splits_file is not None:
            text = Path(splits_file).read_text()
        elif SPLITS_FILE in files:
            text = tree.read(SPLITS_FILE).decode()
        else:
            return {}
        splits = json.loads(text)
    except (OSError, ValueError, ImageLoadError) as error:
        raise ValueError(f"cannot read the split file of {tree.root}: {error}") from error
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise ValueError('the split file must map split names to class lists: {"train": [...]}')
    for split, classes in splits.items():
        repeated = sorted({name for name in classes if classes.count(name) > 1})
        if repeated:
            raise ValueError(
                f"split {split!r} of {tree.root}'s split file lists classes {repeated[:5]} more "
                "than once; list each class once (a repeated class would become two classes)"
            )
    names = list(splits)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            shared = sorted(set(splits[first]) & set(splits[second]))
            if shared:
                raise ValueError(
                    f"splits {first!r} and {second!r} of {tree.root}'s split file share "
                    f"classes {shared[:5]}; few-shot splits must hold disjoint classes, or a "
                    "test class is seen in meta-training"
                )
    return splits


class ClassFolderDataset(ImageCollection):
    """Images in class folders, optionally restricted to one split and tagged by style.

    Images come at their stored size, or resized to ``decode_size`` square as they are
    decoded (needed to stack photos of different sizes into a task).

    ``verify=True`` decodes every image once up front and drops unreadable ones (with a
    warning naming each, or an error when ``on_error='raise'``), so bad files surface
    before training rather than during it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        splits_file: str | os.PathLike[str] | None = None,
        style_rule: StyleRule = "auto",
        on_error: str = "raise",
        verify: bool = False,
        name: str | None = None,
        decode_size: int | None = None,
    ) -> None:
        self.tree = FileTree(root)
        style_of = _style_function(style_rule)
        by_class: dict[str, list[tuple[str, str | None]]] = {}
        files = self.tree.files()
        loose = []
        for relative in files:
            path = PurePosixPath(relative)
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if len(path.parts) < 2:
                loose.append(relative)
                continue
            by_class.setdefault(path.parts[0], []).append((relative, style_of(path)))
        if loose:
            warnings.warn(
                f"{len(loose)} image(s) lie in {self.tree.root} itself, outside any class "
                f"folder, and are left out (e.g. {loose[0]}); move them into <class>/ folders",
                stacklevel=2,
            )
        if not by_class:
            raise ValueError(
                f"no images found in {self.tree.root}: expected <class>/<image> or "
                f"<class>/<style>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)}"
            )
        self.splits = read_splits(self.tree, files, splits_file)
        names = sorted(by_class)
        if split is not None:
            if not self.splits:
                raise ValueError(
                    f"split {split!r} requested but {self.tree.root} has no {SPLITS_FILE}; "
                    "add one mapping split names to class lists, or pass split=None"
                )
            if split not in self.splits:
                raise ValueError(f"unknown split {split!r}; the split file has {list(self.splits)}")
            missing = sorted(set(self.splits[split]) - set(by_class))
            if missing:
                raise ValueError(
                    f"split {split!r} lists {len(missing)} classes with no images, e.g. "
                    f"{missing[:5]}; fix the split file or add the class folders"
                )
            names = list(self.splits[split])
        super().__init__(name or self.tree.root.name, names, on_error, decode_size)
        self._items = [by_class[n] for n in names]
        if verify:
            self._drop_unreadable()

    def _drop_unreadable(self) -> None:
        for class_id, items in enumerate(self._items):
            kept = []
            for relative, style in items:
                try:
                    decode_image(self.tree.read(relative), 1, self.tree.describe(relative))
                    kept.append((relative, style))
                except ImageLoadError as error:
                    if self.on_error == "raise":
                        raise
                    warnings.warn(f"skipping unreadable image: {error}", stacklevel=3)
            if not kept:
                raise ValueError(f"class {self.class_names[class_id]!r} has no readable images")
            self._items[class_id] = kept

    def num_items(self, class_id: int) -> int:
        return len(self._items[class_id])

    def item_source(self, class_id: int, item: int) -> str:
        return self.tree.describe(self._items[class_id][item][0])

    def item_styles(self, class_id: int) -> list[str] | None:
        styles = [style for _, style in self._items[class_id]]
        return None if all(s is None for s in styles) else [s or "" for s in styles]

    def encoded_bytes(self, class_id: int, item: int) -> bytes:
        """The image file's bytes, undecoded."""
        return self.tree.read(self._items[class_id][item][0])

    def read_item(self, class_id: int, item: int) -> Tensor:
        data = self.encoded_bytes(class_id, item)
        return decode_image(data, self.decode_size, self.item_source(class_id, item))
