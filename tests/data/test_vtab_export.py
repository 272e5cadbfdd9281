"""VTAB-1k's task table and the TFDS export, against numbers worked out by hand from
google-research/task_adaptation (data/*.py) and cambridge-mlg/LITE (tf_dataset_reader.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from litemeta.cli import main
from litemeta.data.vtab import vtab_task
from litemeta.data.vtab_export import VTAB_TASKS, export_vtab_task, vtab_splits


class FakeTfds:
    """TFDS as the export sees it: split sizes and the examples of a split string."""

    def __init__(self, sizes: Mapping[str, int], examples: Mapping[str, list[dict]]) -> None:
        self.sizes, self.by_split = sizes, examples
        self.read: list[tuple[str, str]] = []

    def split_sizes(self, name: str) -> Mapping[str, int]:
        return self.sizes

    def examples(self, name: str, split: str) -> Iterable[dict[str, Any]]:
        self.read.append((name, split))
        return self.by_split[split]


def _splits(task: str, protocol: str = "vtab-1k", **sizes: int) -> dict[str, str]:
    return vtab_splits(VTAB_TASKS[task], sizes, protocol)


def test_the_nineteen_tasks_and_their_classes() -> None:
    classes = {name: spec.classes for name, spec in VTAB_TASKS.items()}
    assert classes == {
        "caltech101": 102, "cifar100": 100, "dtd": 47, "oxford_flowers102": 102,
        "oxford_iiit_pet": 37, "patch_camelyon": 2, "sun397": 397, "svhn": 10,
        "resisc45": 45, "eurosat": 10, "dmlab": 6, "kitti-distance": 4,
        "smallnorb-azimuth": 18, "smallnorb-elevation": 9, "dsprites-location": 16,
        "dsprites-orientation": 16, "clevr-distance": 6, "clevr-count": 8,
        "diabetic_retinopathy": 5,
    }  # fmt: skip
    groups = [spec.group for spec in VTAB_TASKS.values()]
    assert (groups.count("natural"), groups.count("specialized")) == (7, 4)
    assert groups.count("structured") == 8


def test_split_definitions_by_hand() -> None:
    """val200 starts where task_adaptation's validation part starts: percent x train // 100."""
    validation = {"train800": "train[:800]", "val200": "validation[:200]", "test": "test"}
    for task in ("dtd", "oxford_flowers102", "sun397", "patch_camelyon", "dmlab"):
        assert _splits(task, train=5) == validation
    assert _splits("kitti-distance") == _splits("diabetic_retinopathy") == validation
    # 90 % of caltech101's 3,060: 2,754; of CIFAR's 50,000: 45,000; of SVHN's 73,257: 65,931.
    assert _splits("caltech101", train=3060)["val200"] == "train[2754:2954]"
    assert _splits("cifar100", train=50000)["val200"] == "train[45000:45200]"
    assert _splits("svhn", train=73257) == {
        "train800": "train[:800]", "val200": "train[65931:66131]", "test": "test"
    }  # fmt: skip
    assert _splits("oxford_iiit_pet", train=3680)["val200"] == "train[2944:3144]"  # 80 %
    # CLEVR: 90 % of 70,000; its TFDS validation split is VTAB's test.
    assert _splits("clevr-count", train=70000) == {
        "train800": "train[:800]", "val200": "train[63000:63200]", "test": "validation"
    }  # fmt: skip
    # Only a train split: 60/20/20 of EuroSAT's 27,000 and Resisc45's 31,500; dSprites
    # 80/10/10 of 737,280.
    assert _splits("eurosat", train=27000) == {
        "train800": "train[:800]", "val200": "train[16200:16400]", "test": "train[21600:]"
    }  # fmt: skip
    assert _splits("resisc45", train=31500)["test"] == "train[25200:]"
    assert _splits("dsprites-orientation", train=737280) == {
        "train800": "train[:800]", "val200": "train[589824:590024]", "test": "train[663552:]"
    }  # fmt: skip
    assert _splits("smallnorb-elevation", train=24300, test=24300) == {
        "train800": "train[:800]", "val200": "test[:200]", "test": "test[50%:]"
    }  # fmt: skip


def test_lites_splits() -> None:
    assert _splits("caltech101", "lite") == {"train": "train[:1000]", "test": "test"}
    assert _splits("clevr-distance", "lite")["test"] == "validation"
    assert _splits("smallnorb-azimuth", "lite")["test"] == "test"  # all of it
    for task in ("eurosat", "resisc45", "dsprites-location"):  # no TFDS test split
        assert _splits(task, "lite") == {"train": "train[:1000]", "test": "train[1000:]"}
    assert _splits("sun397", "lite")["train"] == "train"  # material for LITE's fill


def _objects(**fields: list) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in fields.items()}


def test_label_recipes_by_hand() -> None:
    recipe = {name: spec.recipe for name, spec in VTAB_TASKS.items()}
    assert recipe["clevr-count"]({"objects": _objects(size=[0, 1, 1, 0, 1])}) == 2
    # Closest depth 8.7: thresholds 0, 8, 8.5 lie below it -> class 2; 8.2 -> 1; exactly
    # 8.0 -> 0 (a threshold must lie strictly below); 10.5 -> 5.
    cases = (([12.0, 8.7, 9.9], 2), ([8.2, 30.0], 1), ([8.0], 0), ([10.5], 5))
    for depths, label in cases:
        coords = [[0.0, 0.0, d] for d in depths]
        assert recipe["clevr-distance"]({"objects": _objects(pixel_coords=coords)}) == label
    # KITTI: a car 25 m away and a pedestrian (type 3) at 5 m -> 25 m, above 20 -> class 2;
    # a van at 7 m -> class 0; no vehicle -> 1,000 m -> class 3.
    kitti = recipe["kitti-distance"]
    cases = (([0, 3], [25.0, 5.0], 2), ([1], [7.0], 0), ([3, 4], [5.0, 9.0], 3))
    for types, depths, label in cases:
        location = [[1.0, 1.5, d] for d in depths]
        assert kitti({"objects": _objects(type=types, location=location)}) == label
    # dSprites: 32 x positions in 16 classes (width 2), 40 orientations in 16 (width 2.5).
    assert [recipe["dsprites-location"]({"label_x_position": v}) for v in (0, 1, 2, 31)] == [
        0, 0, 1, 15
    ]  # fmt: skip
    assert [recipe["dsprites-orientation"]({"label_orientation": v}) for v in (2, 3, 5, 39)] == [
        0, 1, 2, 15
    ]  # fmt: skip
    norb = {"label_azimuth": 17, "label_elevation": 8, "label_category": 1}
    assert recipe["smallnorb-azimuth"](norb) == 17 and recipe["smallnorb-elevation"](norb) == 8
    assert recipe["sun397"]({"label": 396}) == 396


def _clevr_scene(objects: int, grey: int) -> dict[str, Any]:
    return {
        "image": np.full((6, 6, 3), grey, dtype=np.uint8),
        "objects": _objects(size=[0] * objects),
    }


def test_export_writes_the_class_folders_vtab_1k_reads(tmp_path: Path) -> None:
    fake = FakeTfds(
        {"train": 70000, "validation": 15000},
        {
            "train[:800]": [_clevr_scene(3, 10), _clevr_scene(4, 11), _clevr_scene(10, 12)],
            "train[63000:63200]": [_clevr_scene(4, 13)],
            "validation": [_clevr_scene(3, 20), _clevr_scene(5, 21)],
        },
    )
    written = export_vtab_task("clevr-count", tmp_path / "clevr", reader=fake)
    assert written == {"train800": 3, "val200": 1, "test": 2}
    assert [split for _, split in fake.read] == ["train[:800]", "train[63000:63200]", "validation"]
    assert {name for name, _ in fake.read} == {"clevr:3.*.*"}
    files = sorted(p.relative_to(tmp_path / "clevr").as_posix() for p in tmp_path.rglob("*.png"))
    assert files == [
        "test/0/0000000.png", "test/2/0000001.png", "train800/0/0000000.png",
        "train800/1/0000001.png", "train800/7/0000002.png", "val200/1/0000000.png",
    ]  # fmt: skip
    with pytest.warns(UserWarning, match="1 of 4 classes have no support image"):
        task = vtab_task(tmp_path / "clevr", decode_size=None)
    assert sorted(int(image[0, 0, 0]) for image in task.support_images) == [10, 11, 12, 13]
    assert task.class_names == ["0", "1", "7"] and task.query_misses == 1  # class 2


def test_export_scales_dsprites_to_rgb_as_task_adaptation(tmp_path: Path) -> None:
    shape = np.zeros((4, 4, 1), dtype=np.uint8)
    shape[1:3, 1:3] = 1
    fake = FakeTfds({"train": 737280}, {"train[:1000]": [{"image": shape, "label_x_position": 5}]})
    fake.by_split["train[1000:]"] = []
    export_vtab_task("dsprites-location", tmp_path / "d", protocol="lite", reader=fake)
    pixels = np.asarray(Image.open(tmp_path / "d" / "train" / "02" / "0000000.png"))
    assert pixels.shape == (4, 4, 3) and pixels[1, 1].tolist() == [255] * 3
    assert pixels[0, 0].tolist() == [0, 0, 0]


def test_export_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown VTAB task 'clevr'; choose one of"):
        export_vtab_task("clevr", tmp_path / "a", reader=FakeTfds({}, {}))
    with pytest.raises(ValueError, match="LITE does not evaluate 'dtd'"):
        export_vtab_task("dtd", tmp_path / "a", protocol="lite", reader=FakeTfds({}, {}))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="exists and is not empty"):
        export_vtab_task("dtd", tmp_path / "full", reader=FakeTfds({}, {}))
    fake = FakeTfds({"train": 9}, {"train[:800]": [_clevr_scene(11, 0)]})
    with pytest.raises(ValueError, match=r"label 8, outside 0\.\.7; is clevr:3\.\*\.\* the TFDS"):
        export_vtab_task("clevr-count", tmp_path / "b", reader=fake)


def test_export_command_says_how_to_install_tfds(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    assert main(["data", "export-vtab", "svhn", "--out", str(tmp_path / "svhn")]) == 1
    assert "pip install tensorflow tensorflow-datasets" in capsys.readouterr().err


def test_any_tfds_version_drops_vtabs_pin(tmp_path: Path) -> None:
    """TFDS 4.9 has oxford_iiit_pet 4.0.0 only, not VTAB's 3.*.*."""
    pet = {"image": np.zeros((2, 2, 3), dtype=np.uint8), "label": 36}
    examples = {"train[:800]": [pet], "train[2944:3144]": [], "test": []}
    fake = FakeTfds({"train": 3680, "test": 3669}, examples)
    export_vtab_task("oxford_iiit_pet", tmp_path / "a", reader=fake)
    export_vtab_task("oxford_iiit_pet", tmp_path / "b", reader=fake, any_tfds_version=True)
    assert [name for name, _ in fake.read[::3]] == ["oxford_iiit_pet:3.*.*", "oxford_iiit_pet"]
    assert (tmp_path / "b" / "train800" / "36" / "0000000.png").is_file()
