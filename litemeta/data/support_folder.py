"""A user's support set as class folders: ``folder/<class>/*`` images, one sub-folder per
class, read at a model's image size (as easyfsl's ``SupportSetFolder`` keeps a support set
as a dataset). ``litemeta personalise``, ``litemeta export`` and the web app's teaching
adapt a learner to such a set."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from litemeta.data.class_folders import FileTree, hidden_name
from litemeta.data.images import IMAGE_EXTENSIONS, ImageLoadError, read_image_file

__all__ = [
    "SkippedImage",
    "SupportSet",
    "folder_images",
    "read_image_or_skip",
    "read_support_folder",
]


@dataclass(frozen=True)
class SkippedImage:
    """An image file left out because it could not be read, with why."""

    path: Path
    error: str


@dataclass(frozen=True)
class SupportSet:
    """Support images ``[n, 3, S, S]`` (uint8) with their labels ``[n]``, indices into
    ``classes``, and the unreadable images that were left out."""

    classes: list[str]
    images: Tensor
    labels: Tensor
    skipped: list[SkippedImage] = field(default_factory=list)


def folder_images(folder: Path, what: str) -> list[Path]:
    """The images under ``folder``, sorted, following linked folders; hidden files (macOS's
    ``._x.png``, ``.git``) are not images, and other files are named in a warning. ``what``
    names the folder in messages (``support``, ``query``)."""
    if folder.is_file():
        raise NotADirectoryError(
            f"{what} must be a folder of images, but {folder} is a file; give the folder "
            "that holds it"
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    files = [folder / relative for relative in FileTree(folder).files()]
    others = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if others:
        warnings.warn(
            f"left out {len(others)} file(s) of {what} folder {folder} that are not images "
            f"litemeta reads (e.g. {others[0].name}; it reads "
            f"{', '.join(IMAGE_EXTENSIONS)}): convert them to JPEG or PNG to use them",
            stacklevel=3,
        )
    return [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]


def read_image_or_skip(
    path: Path, image_size: int, skip_unreadable: bool, skipped: list[SkippedImage]
) -> Tensor | None:
    """The image at ``path``; with ``skip_unreadable`` an unreadable one is recorded in
    ``skipped`` and ``None`` returned instead of raising :class:`ImageLoadError`."""
    try:
        return read_image_file(str(path), image_size)
    except ImageLoadError as error:
        if not skip_unreadable:
            raise
        skipped.append(SkippedImage(path, str(error)))
        return None


def _class_files(folder: Path, files: list[Path]) -> dict[str, list[Path]]:
    """The image files of each class sub-folder of ``folder``, by class name, sorted;
    refuses what would silently give a wrong recogniser (one class, an empty class, stray
    top-level images)."""
    stray = [p for p in files if p.parent == folder]
    if stray:
        raise ValueError(
            f"support images must be in one sub-folder per class, but {len(stray)} lie in "
            f"{folder} itself (e.g. {stray[0].name}); move them into {folder}/<class>/"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not hidden_name(p.name))
    by_class = {
        name: [p for p in files if p.relative_to(folder).parts[0] == name] for name in classes
    }
    empty = [name for name, paths in by_class.items() if not paths]
    if empty:
        raise ValueError(
            f"support class folders {empty} in {folder} have no images; add images or "
            "remove the folders"
        )
    if len(classes) < 2:
        raise ValueError(
            f"{folder} has {len(classes)} class folder(s) {classes}; personalising needs at "
            "least two classes to tell apart (one sub-folder of images per class)"
        )
    return by_class


def read_support_folder(
    folder: Path, image_size: int, *, skip_unreadable: bool = False
) -> SupportSet:
    """The support set of ``folder/<class>/*`` at ``image_size``, classes in sorted order.
    With ``skip_unreadable`` images that cannot be read are left out (and listed in
    ``skipped``), as long as each class keeps one; otherwise they raise
    :class:`ImageLoadError`."""
    by_class = _class_files(folder, folder_images(folder, "support"))
    images: list[Tensor] = []
    labels: list[int] = []
    skipped: list[SkippedImage] = []
    for label, (name, paths) in enumerate(by_class.items()):
        for path in paths:
            image = read_image_or_skip(path, image_size, skip_unreadable, skipped)
            if image is not None:
                images.append(image)
                labels.append(label)
        if label not in labels:
            raise ValueError(f"support class '{name}' has no readable images")
    return SupportSet(list(by_class), torch.stack(images), torch.tensor(labels), skipped)
