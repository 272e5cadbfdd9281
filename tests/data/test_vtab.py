"""VTAB-1k transfer tasks from train/test class folders."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litemeta.data.vtab import vtab_task


def _write(folder: Path, count: int, colour: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(np.full((12, 12, 3), colour, dtype=np.uint8)).save(folder / f"{n}.png")


@pytest.fixture
def vtab_root(tmp_path: Path) -> Path:
    for split, count in (("train", 30), ("test", 7)):
        _write(tmp_path / split / "red", count, (200, 0, 0))
        _write(tmp_path / split / "blue", count, (0, 0, 200))
    return tmp_path


def test_support_is_a_seeded_subset_of_train_and_query_is_all_of_test(vtab_root: Path) -> None:
    task = vtab_task(vtab_root, decode_size=8, support_size=20, seed=3)
    assert task.class_names == ["blue", "red"]
    assert task.support_images.shape == (20, 3, 8, 8)
    assert task.query_images.shape == (14, 3, 8, 8)
    # Images carry their class: red images have a strong red channel.
    red = task.support_labels == task.class_names.index("red")
    assert (task.support_images[red, 0] > 150).all() and (task.support_images[~red, 0] < 50).all()
    again = vtab_task(vtab_root, decode_size=8, support_size=20, seed=3)
    assert (again.support_labels == task.support_labels).all()
    limited = vtab_task(vtab_root, decode_size=8, support_size=20, query_limit=5)
    assert limited.query_images.shape[0] == 5


def test_train_and_test_must_share_classes(vtab_root: Path) -> None:
    _write(vtab_root / "test" / "green", 2, (0, 200, 0))
    with pytest.raises(ValueError, match=r"only in test: \['green'\]"):
        vtab_task(vtab_root, decode_size=8)


def test_an_empty_class_folder_is_named_as_empty(vtab_root: Path) -> None:
    for image in (vtab_root / "test" / "blue").iterdir():
        image.unlink()
    message = re.escape(f"class folders ['{vtab_root / 'test' / 'blue'}'] hold no images")
    with pytest.raises(ValueError, match=message):
        vtab_task(vtab_root, decode_size=8)


@pytest.mark.parametrize(("support", "limit"), [(-5, None), (0, None), (10, -2), (10, 0)])
def test_sizes_below_one_are_refused_not_sliced(vtab_root: Path, support, limit) -> None:
    """``[:-5]`` would quietly leave images out."""
    with pytest.raises(ValueError, match="support_size must be at least 1 and query_limit"):
        vtab_task(vtab_root, decode_size=8, support_size=support, query_limit=limit)
