"""`litemeta data info`'s summaries: counts, styles, splits and sizes of each kind of dataset,
and with ``verify`` the images that do not decode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.info import VERIFY_SIZE, describe, unreadable_images
from litemeta.data.tfrecord import write_records
from tests.data.test_orbit import LAYOUT, write_orbit
from tests.data.tf_example import make_example


def _image(path: Path, size: tuple[int, int] = (20, 14)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 20, 160)).save(path)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """Classes of 2, 3 and 1 images; the first image of class c is 30x30, the rest 20x14."""
    root = tmp_path / "folders"
    for name, count in (("a", 2), ("b", 3), ("c", 1)):
        for item in range(count):
            _image(root / name / f"{item}.png", (30, 30) if name == "c" else (20, 14))
    return root


def test_class_folders_are_counted_and_their_sizes_sampled(folders: Path):
    assert describe(str(folders)).splitlines() == [
        f"class folders: {folders}",
        "classes: 3",
        "images: 6 (1-3 per class)",
        "image sizes (sampled): 20x14 (2), 30x30 (1)",
    ]


def test_verify_lists_each_image_that_does_not_decode(folders: Path):
    assert describe(str(folders), verify=True).endswith("\nverified: all 6 images decode")
    (folders / "b" / "1.png").write_bytes(b"\x89PNG cut short")
    lines = describe(str(folders), verify=True).splitlines()
    assert lines[-2] == "unreadable: 1 of 6 images"
    assert lines[-1].startswith(f"  cannot decode image {folders / 'b' / '1.png'}: ")
    collection = ClassFolderDataset(folders, decode_size=VERIFY_SIZE)
    total, errors = unreadable_images(collection)
    [(error, count)] = errors.items()
    assert total == 6 and count == 1
    assert error.startswith(f"cannot decode image {folders / 'b' / '1.png'}: ")


def test_styles_and_splits_of_class_folders_are_listed(tmp_path: Path):
    for name in ("cat", "dog", "owl"):
        for style in ("photo", "sketch"):
            _image(tmp_path / name / style / "0.png")
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["cat", "dog"], "test": ["owl"]}))
    lines = describe(str(tmp_path)).splitlines()
    assert lines[1:5] == [
        "classes: 3",
        "images: 6 (2-2 per class)",
        "styles: 2: photo, sketch",
        "splits: train 2, test 1",
    ]


def test_orbit_splits_are_summarised_per_split(tmp_path: Path):
    root = write_orbit(tmp_path, "train")
    write_orbit(tmp_path, "test")
    clean = sum(len(counts[0]) for objects in LAYOUT.values() for counts in objects.values())
    clutter = sum(len(counts[1]) for objects in LAYOUT.values() for counts in objects.values())
    frames = sum(sum(c[0]) + sum(c[1]) for objects in LAYOUT.values() for c in objects.values())
    summary = f"2 users, 3 objects, videos {clean} clean, {clutter} clutter, {frames} frames"
    assert describe(str(root), verify=True).splitlines() == [
        f"ORBIT: {root}",
        f"train: {summary}, frame sizes (sampled) 12x12 (3)",
        f"test: {summary}, frame sizes (sampled) 12x12 (3)",
        f"verified: all {2 * frames} images decode",
    ]


def test_an_unreadable_first_orbit_frame_is_skipped_in_sizes_and_listed(tmp_path: Path):
    root = write_orbit(tmp_path, "train")
    first = root / "train" / "P100" / "keys" / "clean" / "P100--keys--clean--vid0"
    (first / "P100--keys--clean--vid0-00001.jpg").write_bytes(b"xx")
    lines = describe(str(root), verify=True).splitlines()
    assert lines[1].endswith("frame sizes (sampled) 12x12 (2)")
    assert lines[2:4] == [
        "unreadable: 1 of 77 images",
        f"  cannot decode image {first / 'P100--keys--clean--vid0-00001.jpg'}: not an image "
        "format PIL reads (or a corrupt header); replace or delete the file",
    ]


def test_orbit_folders_left_out_are_warned_about_once(tmp_path: Path):
    root = write_orbit(tmp_path, "train")
    (root / "train" / "P100" / "keys" / "clean" / "empty").mkdir()
    with pytest.warns(UserWarning, match="left out") as caught:
        describe(str(root), verify=True)
    assert len(caught) == 1


COUNTS = {0: 3, 1: 4, 2: 2, 3: 5}  # classes 0-1 train, 2 valid, 3 test


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """A Meta-Dataset source with the classes and counts of ``COUNTS``; 24x18 images."""
    for class_id, count in COUNTS.items():
        buffer = io.BytesIO()
        Image.new("RGB", (24, 18), (40 * class_id, 0, 0)).save(buffer, "PNG")
        write_records(
            tmp_path / f"{class_id}.tfrecords",
            [make_example(image=buffer.getvalue(), label=class_id)] * count,
        )
    spec = {
        "name": "toy",
        "classes_per_split": {"TRAIN": 2, "VALID": 1, "TEST": 1},
        "images_per_class": {str(c): n for c, n in COUNTS.items()},
        "class_names": {str(c): f"n{c}" for c in COUNTS},
        "file_pattern": "{}.tfrecords",
    }
    (tmp_path / "dataset_spec.json").write_text(json.dumps(spec))
    return tmp_path


def test_meta_dataset_records_are_counted_per_split(records: Path):
    assert describe(str(records), verify=True).splitlines() == [
        f"Meta-Dataset records: {records}",
        "train: 2 classes, 7 images",
        "valid: 1 classes, 2 images",
        "test: 1 classes, 5 images",
        "image sizes (sampled): 24x18 (4)",
        "verified: all 14 images decode",
    ]


def test_records_that_are_not_images_are_named_with_their_offset(records: Path):
    write_records(records / "0.tfrecords", [make_example(image=b"not an image", label=0)] * 3)
    assert "image sizes (sampled): 24x18 (3)" in describe(str(records)).splitlines()
    lines = describe(str(records), verify=True).splitlines()
    assert lines[-4] == "unreadable: 3 of 14 images"
    assert [line.split(":")[0] for line in lines[-3:]] == [
        f"  cannot decode image {records / '0.tfrecords'}@{offset}" for offset in (0, 61, 122)
    ]
    assert "BytesIO" not in "\n".join(lines)


def test_no_readable_sample_is_said_in_the_size_line(records: Path):
    for class_id, count in COUNTS.items():
        write_records(
            records / f"{class_id}.tfrecords", [make_example(image=b"x", label=class_id)] * count
        )
    assert "image sizes (sampled): none readable (--verify lists" in describe(str(records))


def test_whole_file_errors_are_listed_once_and_missing_files_named(records: Path):
    (records / "0.tfrecords").write_bytes(b"garbage that is not a record file")
    (records / "1.tfrecords").unlink()
    (records / "2.tfrecords").write_bytes(b"")
    spec = json.loads((records / "dataset_spec.json").read_text())
    spec["images_per_class"]["3"] = 9  # the file holds 5
    (records / "dataset_spec.json").write_text(json.dumps(spec))
    assert (
        "missing: no record file for 1 classes: 1 (n1) (file pattern '{}.tfrecords'); "
        "the conversion is incomplete"
    ) in describe(str(records)).splitlines()
    lines = describe(str(records), verify=True).splitlines()
    start = lines.index("unreadable: 12 of 12 images")  # 3 + 4 (spec) + 0 + 5 present
    listed = lines[start + 1 :]
    assert len(listed) == 4, "each whole-file error once, not once per image"
    assert listed[0].startswith(f"  {records / '0.tfrecords'}: bad length checksum")
    assert listed[0].endswith("(3 images)")
    assert listed[1].startswith("  no record file for class 1 (n1)")
    assert listed[1].endswith("(4 images)")
    assert listed[2].startswith("  class 2 has 0 records")
    assert listed[2].endswith("says 2; regenerate the records or the spec (0 images)")
    assert listed[3].startswith("  class 3 has 5 records")
    assert listed[3].endswith("says 9; regenerate the records or the spec (5 images)")


def test_a_records_folder_without_its_spec_says_so(records: Path):
    (records / "dataset_spec.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"\.tfrecords files but no dataset_spec\.json"):
        describe(str(records))


def test_a_missing_dataset_says_what_to_pass(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="pass 'emoji' or a dataset path"):
        describe(str(tmp_path / "nowhere"))


def test_images_beside_sub_folders_and_a_wrapping_folder_are_explained(tmp_path: Path):
    root = tmp_path / "wrapped"
    for name in ("cat", "dog"):
        _image(root / "photos" / name / "0.png")
    _image(root / "photos" / "loose.png")
    lines = describe(str(root)).splitlines()
    assert "styles: 3: (none: directly in the class folder), cat, dog" in lines
    assert any(line.startswith("note: one class folder, 'photos'") for line in lines)


def test_images_outside_class_folders_are_named_in_a_warning(folders: Path):
    _image(folders / "stray.png")
    with pytest.warns(UserWarning, match=r"1 image\(s\) lie in .* left out \(e\.g\. stray\.png\)"):
        collection = ClassFolderDataset(folders)
    assert collection.class_names == ["a", "b", "c"]
