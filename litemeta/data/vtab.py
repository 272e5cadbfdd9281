"""VTAB-1k transfer tasks (Zhai et al., 2019) as LITE's VTAB+MD protocol uses them: the
support set is 1,000 training images of a dataset, the query set its test images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from litemeta.data.base import ImageCollection
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.tasks import Task

__all__ = ["vtab_task"]


def _items(collection: ImageCollection) -> list[tuple[int, int]]:
    return [(c, i) for c in range(collection.num_classes) for i in range(collection.num_items(c))]


def _load(
    collection: ImageCollection, items: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([collection.load_image(c, i) for c, i in items])
    return images, torch.tensor([c for c, _ in items], dtype=torch.int64)


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


def vtab_task(
    root: str | os.PathLike[str],
    *,
    decode_size: int | None = 224,
    support_size: int = 1000,
    query_limit: int | None = None,
    seed: int = 0,
    on_error: str = "raise",
) -> Task:
    """One VTAB-1k task from ``root/train/<class>/*`` and ``root/test/<class>/*``.

    The support set is the first ``support_size`` training images of a shuffle fixed by
    ``seed`` (VTAB-1k's train800+val200 is such a random subset); the query set is every
    test image, or ``query_limit`` of them drawn with the same seed. Images are resized to
    ``decode_size`` square as they are decoded (VTAB's images differ in size; ``None``
    keeps the stored size, which must then be the same for all).
    """
    if support_size < 1 or (query_limit is not None and query_limit < 1):
        raise ValueError(
            f"support_size must be at least 1 and query_limit None or at least 1; got "
            f"{support_size} and {query_limit}"
        )
    root = Path(root)
    train = ClassFolderDataset(root / "train", on_error=on_error, decode_size=decode_size)
    test = ClassFolderDataset(root / "test", on_error=on_error, decode_size=decode_size)
    _check_same_classes(root, train.class_names, test.class_names)
    rng = np.random.default_rng(seed)
    train_items, test_items = _items(train), _items(test)
    support = [train_items[k] for k in rng.permutation(len(train_items))[:support_size]]
    if query_limit is not None:
        test_items = [test_items[k] for k in sorted(rng.permutation(len(test_items))[:query_limit])]
    support_images, support_labels = _load(train, support)
    query_images, query_labels = _load(test, test_items)
    return Task(support_images, support_labels, query_images, query_labels, train.class_names)
