"""VTAB-1k transfer tasks (Zhai et al., 2019): one task per dataset, its support set 1,000
labelled images, its query set the test images.

Three rules pick the support set (``VtabSettings.support``):

- ``vtab-1k``: the published benchmark, every image of ``root/train800/<class>/`` and
  ``root/val200/<class>/`` (VTAB's ``train800val200`` split, see
  :mod:`litemeta.data.vtab_export`). A class with no image there keeps its test images,
  each scored as a wrong prediction, as VTAB's classifier head scores them.
- ``lite-first-1000``: LITE's VTAB+MD evaluation (``src/run.py``, ``tf_dataset_reader.py``
  of cambridge-mlg/LITE): the first ``support_size`` images of ``root/train/<class>/`` in
  file-name order (TFDS's ``train[:1000]`` once exported), filled as LITE fills SUN397
  (``image_folder_reader.py``) when they miss a class.
- ``random``: ``support_size`` images of ``root/train/`` drawn with a seed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch

from litemeta.config import ConfigError
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.tasks import Task

__all__ = ["SUPPORT_RULES", "VTAB_1K_SPLITS", "VtabSettings", "lite_first_support", "vtab_task"]

SupportRule = Literal["vtab-1k", "lite-first-1000", "random"]
SUPPORT_RULES: tuple[str, ...] = ("vtab-1k", "lite-first-1000", "random")

#: The folders whose images are VTAB-1k's support set (TFDS ``train800`` and ``val200``).
VTAB_1K_SPLITS = ("train800", "val200")

#: LITE's SUN397 fill takes at most this many images of a class until every class has one.
LITE_FILL_PER_CLASS = 2


@dataclass
class VtabSettings:
    """How a VTAB task is read: the ``support`` rule (see the module), the support size of
    ``lite-first-1000`` and ``random`` (``vtab-1k``'s is its 800 + 200 files), and an
    optional seeded limit on the test images (``None``: all of them)."""

    support: SupportRule = "vtab-1k"
    support_size: int = 1000
    query_limit: int | None = None

    def __post_init__(self) -> None:
        if self.support not in SUPPORT_RULES:
            raise ConfigError(f"support must be one of {list(SUPPORT_RULES)}, got {self.support!r}")
        if self.support_size < 1:
            raise ConfigError(f"support_size must be at least 1, got {self.support_size}")
        if self.support == "vtab-1k" and self.support_size != 1000:
            raise ConfigError(
                f"support_size {self.support_size} does not apply to support 'vtab-1k', whose "
                "support set is every file of train800/ and val200/; choose support "
                "'lite-first-1000' or 'random' for another size"
            )
        if self.query_limit is not None and self.query_limit < 1:
            raise ConfigError(
                f"query_limit must be null (every test image) or at least 1, got {self.query_limit}"
            )


@dataclass(frozen=True)
class _Image:
    """One image of a class-folder collection, with its class's index in the task."""

    collection: ClassFolderDataset
    class_id: int
    item: int
    label: int

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.collection.item_source(self.class_id, self.item)).name


def _images(collection: ClassFolderDataset, classes: Sequence[str]) -> list[_Image]:
    """Every image of ``collection`` (by class, then file), labelled by its place in
    ``classes``."""
    return [
        _Image(collection, c, i, classes.index(name))
        for c, name in enumerate(collection.class_names)
        for i in range(collection.num_items(c))
    ]


def _load(images: Sequence[_Image], labels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    stacked = torch.stack([i.collection.load_image(i.class_id, i.item) for i in images])
    return stacked, torch.tensor(list(labels), dtype=torch.int64)


def _check_same_classes(root: Path, train: list[str], test: list[str]) -> None:
    """Refuse train and test folders of different classes, naming class folders that exist
    but hold no images."""
    if train == test:
        return
    only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
    empty = [
        str(root / split / name)
        for split, names in (("test", only_train), ("train", only_test))
        for name in names
        if (root / split / name).is_dir()
    ]
    if empty:
        raise ValueError(
            f"class folders {empty} hold no images; VTAB needs images of every class in both "
            "train/ and test/: add them, or remove the class from both"
        )
    raise ValueError(
        f"{root}/train and {root}/test must hold the same class folders; only in train: "
        f"{only_train}, only in test: {only_test}"
    )


def _check_layout(root: Path, support: str, folders: Sequence[str]) -> None:
    """Refuse a root that lacks the folders ``support`` reads, saying which layout it has."""
    missing = [name for name in folders if not (root / name).is_dir()]
    if not missing:
        return
    has = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    other = (
        "support 'lite-first-1000' or 'random' read train/ and test/"
        if support == "vtab-1k"
        else "support 'vtab-1k' reads train800/, val200/ and test/"
    )
    raise ValueError(
        f"support {support!r} reads {', '.join(f'{root}/{n}/<class>/' for n in folders)}; "
        f"{root} lacks {missing} (it has {has or 'no folders'}); {other}"
    )


def lite_first_support(order: Sequence[int], num_classes: int, size: int = 1000) -> list[int]:
    """Positions in ``order`` (the training images' labels, in file order) of LITE's support
    set: the first ``size`` images when they hold every class; otherwise LITE's SUN397 fill
    (``_get_sun397_context_batch`` of cambridge-mlg/LITE): walk the images taking one only
    while its class has fewer than two, until every class has one, then add the images
    that follow, whatever their class, up to ``size`` in all (more when the walk took more).
    """
    labels = np.asarray(order, dtype=np.int64)
    if size < num_classes:
        raise ValueError(
            f"a support set of {size} images cannot hold all {num_classes} classes; raise "
            "the support size to at least the number of classes"
        )
    if np.unique(labels[:size]).size == num_classes:
        return list(range(min(size, len(labels))))
    counts = np.zeros(num_classes, dtype=np.int64)
    taken: list[int] = []
    position = 0
    while position < len(labels) and (counts == 0).any():
        label = labels[position]
        if counts[label] < LITE_FILL_PER_CLASS:
            taken.append(position)
            counts[label] += 1
        position += 1
    following = range(position, min(len(labels), position + max(size - len(taken), 0)))
    return taken + list(following)


def vtab_task(
    root: str | os.PathLike[str],
    *,
    support: SupportRule = "vtab-1k",
    support_size: int = 1000,
    query_limit: int | None = None,
    decode_size: int | None = 224,
    seed: int = 0,
    on_error: str = "raise",
) -> Task:
    """One VTAB-1k task from class folders under ``root``.

    ``support='vtab-1k'`` reads ``root/train800``, ``root/val200`` and ``root/test``; the
    others ``root/train`` and ``root/test`` (see the module for each rule). The query set is
    every test image, or ``query_limit`` of them drawn with ``seed``; test images of a class
    without support images are counted in the task's ``query_misses``. Images are resized to
    ``decode_size`` square as they are decoded (``None`` keeps the stored size, which must
    then be the same for all).
    """
    settings = VtabSettings(support, support_size, query_limit)
    root = Path(root)
    rng = np.random.default_rng(seed)

    def folder(name: str) -> ClassFolderDataset:
        return ClassFolderDataset(root / name, on_error=on_error, decode_size=decode_size)

    if settings.support == "vtab-1k":
        _check_layout(root, settings.support, (*VTAB_1K_SPLITS, "test"))
        parts = [folder(name) for name in VTAB_1K_SPLITS]
        test = folder("test")
        classes = sorted({name for part in (*parts, test) for name in part.class_names})
        chosen = [image for part in parts for image in _images(part, classes)]
    else:
        _check_layout(root, settings.support, ("train", "test"))
        train, test = folder("train"), folder("test")
        _check_same_classes(root, train.class_names, test.class_names)
        classes = train.class_names
        pool = _images(train, classes)
        if settings.support == "random":
            chosen = [pool[k] for k in rng.permutation(len(pool))[: settings.support_size]]
        else:
            pool.sort(key=lambda image: (image.file_name, classes[image.label]))
            positions = lite_first_support(
                [image.label for image in pool], len(classes), settings.support_size
            )
            chosen = [pool[k] for k in positions]
    queries = _images(test, classes)
    if settings.query_limit is not None:
        drawn = rng.permutation(len(queries))[: settings.query_limit]
        queries = [queries[k] for k in sorted(drawn)]
    return _task(root, classes, chosen, queries)


def _task(root: Path, classes: list[str], support: list[_Image], queries: list[_Image]) -> Task:
    """The task of the classes that have support images; test images of the others are
    its ``query_misses`` (with a warning naming those classes)."""
    present = sorted({image.label for image in support})
    new_label = {old: new for new, old in enumerate(present)}
    scored = [image for image in queries if image.label in new_label]
    if len(present) < len(classes):
        absent = [name for c, name in enumerate(classes) if c not in new_label]
        warnings.warn(
            f"{root}: {len(absent)} of {len(classes)} classes have no support image (e.g. "
            f"{absent[:5]}); their {len(queries) - len(scored)} test image(s) count as wrong "
            "predictions, as VTAB-1k scores them",
            stacklevel=3,
        )
    support_images, support_labels = _load(support, [new_label[i.label] for i in support])
    query_images, query_labels = _load(scored, [new_label[i.label] for i in scored])
    return Task(
        support_images,
        support_labels,
        query_images,
        query_labels,
        [classes[c] for c in present],
        query_misses=len(queries) - len(scored),
    )
