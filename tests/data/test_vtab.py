"""VTAB-1k transfer tasks from class folders: the three support rules."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litemeta.data.vtab import VtabSettings, lite_first_support, vtab_task


def _write(folder: Path, count: int, colour: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(np.full((12, 12, 3), colour, dtype=np.uint8)).save(folder / f"{n}.png")


def _write_id(folder: Path, name: str, image_id: int) -> None:
    """A 4x4 grey image whose every pixel is ``image_id``: a task's images say which files
    they came from."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.full((4, 4, 3), image_id, dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"{name}.png")


def _ids(images) -> list[int]:
    return sorted(int(image[0, 0, 0]) for image in images)


@pytest.fixture
def vtab_root(tmp_path: Path) -> Path:
    for split, count in (("train", 30), ("test", 7)):
        _write(tmp_path / split / "red", count, (200, 0, 0))
        _write(tmp_path / split / "blue", count, (0, 0, 200))
    return tmp_path


def test_random_support_is_a_seeded_subset_of_train_and_query_is_all_of_test(vtab_root):
    task = vtab_task(vtab_root, support="random", decode_size=8, support_size=20, seed=3)
    assert task.class_names == ["blue", "red"]
    assert task.support_images.shape == (20, 3, 8, 8)
    assert task.query_images.shape == (14, 3, 8, 8)
    # Images carry their class: red images have a strong red channel.
    red = task.support_labels == task.class_names.index("red")
    assert (task.support_images[red, 0] > 150).all() and (task.support_images[~red, 0] < 50).all()
    again = vtab_task(vtab_root, support="random", decode_size=8, support_size=20, seed=3)
    assert (again.support_labels == task.support_labels).all()
    limited = vtab_task(
        vtab_root, support="random", decode_size=8, support_size=20, query_limit=5
    )
    assert limited.query_images.shape[0] == 5


def test_train_and_test_must_share_classes(vtab_root: Path) -> None:
    _write(vtab_root / "test" / "green", 2, (0, 200, 0))
    with pytest.raises(ValueError, match=r"only in test: \['green'\]"):
        vtab_task(vtab_root, support="random", decode_size=8)


def test_an_empty_class_folder_is_named_as_empty(vtab_root: Path) -> None:
    for image in (vtab_root / "test" / "blue").iterdir():
        image.unlink()
    message = re.escape(f"class folders ['{vtab_root / 'test' / 'blue'}'] hold no images")
    with pytest.raises(ValueError, match=message):
        vtab_task(vtab_root, support="lite-first-1000", decode_size=8)


@pytest.mark.parametrize(
    ("support", "size", "limit", "message"),
    [
        ("random", -5, None, "support_size must be at least 1"),
        ("random", 0, None, "support_size must be at least 1"),
        ("random", 10, -2, "query_limit must be null"),
        ("random", 10, 0, "query_limit must be null"),
        ("vtab-1k", 500, None, "does not apply to support 'vtab-1k'"),
        ("first-1000", 1000, None, "support must be one of"),
    ],
)
def test_bad_settings_are_refused_not_sliced(vtab_root, support, size, limit, message) -> None:
    """``[:-5]`` would quietly leave images out."""
    with pytest.raises(ValueError, match=message):
        VtabSettings(support, size, limit)
    with pytest.raises(ValueError, match=message):
        vtab_task(vtab_root, support=support, support_size=size, query_limit=limit)


def test_vtab_1k_support_is_exactly_the_train800_and_val200_files(tmp_path: Path) -> None:
    """The support set is every file of train800/ and val200/ and nothing else; the query
    set every file of test/."""
    layout = {
        "train800": {"cat": [1, 2, 3], "dog": [4, 5]},
        "val200": {"cat": [6], "dog": [7, 8]},
        "test": {"cat": [20, 21], "dog": [22]},
        "train": {"cat": [90, 91], "dog": [92]},  # another layout's folder: never read
    }
    for split, classes in layout.items():
        for name, ids in classes.items():
            for image_id in ids:
                _write_id(tmp_path / split / name, f"{image_id:03d}", image_id)
    task = vtab_task(tmp_path, decode_size=None)
    assert task.class_names == ["cat", "dog"]
    assert _ids(task.support_images) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert _ids(task.query_images) == [20, 21, 22]
    cats = task.support_images[task.support_labels == 0]
    assert _ids(cats) == [1, 2, 3, 6]
    assert task.query_misses == 0


def test_vtab_1k_class_without_support_images_scores_its_test_images_as_misses(tmp_path):
    """As VTAB-1k's SUN397: 'owl' has test images but none in train800/val200."""
    for split, name, ids in (
        ("train800", "cat", [1, 2]),
        ("val200", "dog", [3]),
        ("test", "cat", [10]),
        ("test", "dog", [11, 12]),
        ("test", "owl", [13, 14, 15]),
    ):
        for image_id in ids:
            _write_id(tmp_path / split / name, f"{image_id:03d}", image_id)
    with pytest.warns(UserWarning, match=r"1 of 3 classes have no support image .*'owl'.* 3 test"):
        task = vtab_task(tmp_path, decode_size=None)
    assert task.class_names == ["cat", "dog"]
    assert _ids(task.query_images) == [10, 11, 12]
    assert task.query_misses == 3


def test_vtab_1k_names_the_layout_it_needs(vtab_root: Path) -> None:
    with pytest.raises(ValueError, match=r"lacks \['train800', 'val200'\].*'lite-first-1000'"):
        vtab_task(vtab_root)


def test_lite_first_support_by_hand() -> None:
    # Every class among the first 4: exactly the first 4.
    assert lite_first_support([0, 1, 2, 1, 0, 2, 2], num_classes=3, size=4) == [0, 1, 2, 3]
    # Classes 2 and 3 missing from the first 6: take at most 2 per class until every class
    # has one (positions 0, 1, 5, 6, 7; positions 2-4 are a third to fifth 0), then the
    # images that follow, whatever their class, up to 6.
    order = [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]
    assert lite_first_support(order, num_classes=4, size=6) == [0, 1, 5, 6, 7, 8]
    # The walk can take more than the size (LITE then adds nothing).
    assert lite_first_support([0, 0, 1, 2], num_classes=3, size=3) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot hold all 4 classes"):
        lite_first_support(order, num_classes=4, size=3)


def test_lite_first_1000_takes_the_first_files_by_name_across_classes(tmp_path: Path) -> None:
    """Files named by their place in TFDS's train split (as the export names them)."""
    labels = ["a", "b", "a", "c", "b", "a", "c", "c"]
    for index, name in enumerate(labels):
        _write_id(tmp_path / "train" / name, f"{index:07d}", 100 + index)
    for name in "abc":
        _write_id(tmp_path / "test" / name, "0000000", ord(name))
    task = vtab_task(tmp_path, support="lite-first-1000", support_size=5, decode_size=None)
    assert _ids(task.support_images) == [100, 101, 102, 103, 104]
    # Class c's first file is the fourth, so the first 3 miss it: LITE's fill takes
    # a (0), b (1), a (2), c (3).
    task = vtab_task(tmp_path, support="lite-first-1000", support_size=3, decode_size=None)
    assert _ids(task.support_images) == [100, 101, 102, 103]
    assert task.query_misses == 0 and task.way == 3
