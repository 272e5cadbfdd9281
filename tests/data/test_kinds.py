"""Dataset kinds register themselves by name: a new kind of dataset is one new module in
``litemeta/data/kinds``, seen by the settings, training, evaluation, ``litemeta data info``
and the pipeline benchmark."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import litemeta
import litemeta.data.kinds
from litemeta.cli import main
from litemeta.config import ConfigError
from litemeta.data.info import describe
from litemeta.data.orbit_sampler import OrbitTaskSampler
from litemeta.data.registry import DATASETS, DatasetKind, dataset_kinds, discover_datasets
from litemeta.data.vtab import VtabSettings
from litemeta.experiment import load_experiment, task_dataset
from litemeta.experiment.jobs import train_experiment
from tests.cli_helpers import accuracies_by_hand

NEW_KIND = '''
"""Images stored as arrays in one ``<split>.npz`` file per split: a kind added as one file."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from litemeta.data.base import ImageCollection
from litemeta.data.info import VERIFY_SIZE, verify_lines
from litemeta.data.registry import DatasetKind


@dataclass
class NpzSettings:
    images_key: str = "images"
    labels_key: str = "labels"


class NpzArrays(ImageCollection):
    def __init__(self, path, settings, decode_size=None, on_error="raise"):
        with np.load(path) as arrays:
            self.images = arrays[settings.images_key]
            labels = arrays[settings.labels_key]
        names = sorted(set(labels.tolist()))
        super().__init__(Path(path).stem, [str(n) for n in names], on_error, decode_size)
        self.items = [np.flatnonzero(labels == n) for n in names]

    def num_items(self, class_id):
        return len(self.items[class_id])

    def item_source(self, class_id, item):
        return f"{self.name}[{self.items[class_id][item]}]"

    def read_item(self, class_id, item):
        image = self.images[self.items[class_id][item]]
        if self.decode_size is not None:
            image = np.asarray(Image.fromarray(image).resize((self.decode_size,) * 2))
        return torch.tensor(image).permute(2, 0, 1).contiguous()


def _found_keys(path):
    """The settings that name a file's 4-d array as its images, its 1-d array as labels."""
    with np.load(path) as arrays:
        keys = {arrays[key].ndim: key for key in arrays.files}
    return NpzSettings(images_key=keys[4], labels_key=keys[1])


class NpzKind(DatasetKind):
    name = "npz"
    settings = NpzSettings
    decode_at_stored_size = True

    def collection(self, data, split, size):
        path = self.checked_root(data) / f"{split}.npz"
        return NpzArrays(path, data.npz, size, data.on_error)

    def detect(self, target):
        return (Path(target) / "train.npz").is_file()

    def describe(self, target, verify=False):
        paths = sorted(Path(target).glob("*.npz"))
        found = [NpzArrays(path, _found_keys(path), VERIFY_SIZE) for path in paths]
        lines = [f"npz arrays: {target}"]
        lines += [f"{c.name}: {c.num_classes} classes, {len(c.images)} images" for c in found]
        return "\\n".join(lines + (verify_lines(found) if verify else []))
'''

BUILT_IN = {"emoji", "folders", "orbit", "meta-dataset", "vtab"}


@pytest.fixture
def restore_registry():
    before = dict(DATASETS)
    yield
    DATASETS.clear()
    DATASETS.update(before)


@pytest.fixture
def new_kind_module(tmp_path, monkeypatch, restore_registry):
    """Write a kind module into a folder on the ``litemeta.data.kinds`` package path."""
    folder = tmp_path / "more_kinds"
    folder.mkdir()
    (folder / "npz_arrays.py").write_text(textwrap.dedent(NEW_KIND))
    kinds = litemeta.data.kinds
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(folder)])
    yield discover_datasets()
    sys.modules.pop("litemeta.data.kinds.npz_arrays", None)


def _write_arrays(root: Path, classes: int = 4, per_class: int = 3, size: int = 16) -> None:
    """One ``.npz`` per split: ``classes`` colours, ``per_class`` noisy squares of each."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for split in ("train", "validation", "test"):
        labels = np.repeat(np.arange(classes), per_class)
        colours = rng.integers(0, 256, size=(classes, 3))
        noise = rng.integers(-20, 21, size=(len(labels), size, size, 3))
        pixels = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        np.savez(root / f"{split}.npz", pixels=pixels, classes=labels)


def test_the_package_registers_every_kind_by_its_name():
    kinds = dataset_kinds()
    assert set(kinds) >= BUILT_IN
    for name, kind in kinds.items():
        assert isinstance(kind, DatasetKind) and kind.name == name
    assert kinds["orbit"].settings is OrbitTaskSampler and kinds["vtab"].settings is VtabSettings
    assert kinds["meta-dataset"].section == "meta_dataset"
    assert [name for name, kind in kinds.items() if not kind.trainable] == ["vtab"]


def test_a_name_taken_by_another_kind_is_refused(restore_registry):
    with pytest.raises(ValueError, match=r"'orbit' .* is taken by .*OrbitKind"):

        class Impostor(DatasetKind):
            name = "orbit"


def test_each_kind_has_its_own_section_saved_with_the_data_settings():
    config = load_experiment("orbit", ["data.orbit.target=clean", "data.vtab.query_limit=5"])
    saved = config.to_dict()["data"]
    assert saved["orbit"]["target"] == "clean" and saved["vtab"]["query_limit"] == 5
    assert saved["meta_dataset"] == {"verify_crc": True}
    assert config.data.orbit.target == "clean"  # a section reads as an attribute
    with pytest.raises(ConfigError, match=r"unknown key 'colour' in section 'data\.orbit'"):
        load_experiment("orbit", ["data.orbit.colour=red"])
    with pytest.raises(ConfigError, match=r"data\.vtab\.query_limit must be"):
        load_experiment("vtab", ["data.vtab.query_limit=0"])


def test_a_saved_run_with_the_old_flat_key_still_loads_naming_the_new_place(tmp_path):
    saved = load_experiment("meta-dataset").to_dict()
    del saved["data"]["meta_dataset"]
    saved["data"]["verify_crc"] = False  # as runs saved it before the kinds had sections
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(saved))
    with pytest.warns(UserWarning, match=r"data\.verify_crc is now data\.meta_dataset\."):
        config = load_experiment(tmp_path / "experiment.yaml")
    assert config.data.meta_dataset.verify_crc is False


def test_a_kind_without_training_tasks_is_refused_before_training(tmp_path):
    config = load_experiment("vtab", [f"data.root={tmp_path}", f"training.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"data\.dataset=vtab has no tasks to meta-train on"):
        train_experiment(config)
    assert not any(tmp_path.iterdir())


def test_no_dataset_name_is_compared_outside_the_kind_modules():
    package = Path(litemeta.__file__).parent
    kinds = package / "data" / "kinds"
    compared = re.compile(r"dataset\s*(==|!=|in \(|not in \()")
    found = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if kinds not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if compared.search(line)
    ]
    assert not found, "ask the kind (litemeta.data.registry) instead: " + ", ".join(found)


def test_a_new_kind_module_is_trained_evaluated_described_and_benchmarked(
    new_kind_module, tmp_path, capsys
):
    assert "npz" in new_kind_module
    root, run = tmp_path / "arrays", tmp_path / "run"
    _write_arrays(root)
    settings = {
        "model": {"backbone": "resnet18", "pretrained": False, "image_size": 32},
        "data": {
            "dataset": "npz",
            "root": str(root),
            "npz": {"images_key": "pixels", "labels_key": "classes"},
            "sampler": {"way": 3, "shot": 2, "query": 1},
            "validation_tasks": 2,
        },
        "training": {"steps": 1, "tasks_per_step": 1, "output_dir": str(run), "lite": {"h": 2}},
        "evaluation": {"tasks": 2},
    }
    config_file = tmp_path / "npz.yaml"
    config_file.write_text(yaml.safe_dump(settings))

    # Meta-trained, its section saved with the run.
    assert main(["train", "--config", str(config_file)]) == 0
    saved = yaml.safe_load((run / "experiment.yaml").read_text())["data"]
    assert saved["npz"] == {"images_key": "pixels", "labels_key": "classes"}

    # Evaluated from the run's saved settings: the accuracy of the tasks by hand.
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--tasks", "2"]) == 0
    config = load_experiment(run / "experiment.yaml")
    tasks = task_dataset(config.data, "test", 2, 32, config.evaluation.seed)
    assert [task.way for task in tasks] == [3, 3]
    mean = sum(accuracies_by_hand(run / "best.pt", tasks)) / 2
    table = capsys.readouterr().out
    assert f"| meta-trained with LITE (best.pt) | 2 | {100 * mean:.2f} ±" in table

    # Described by `litemeta data info`.
    assert main(["data", "info", str(root), "--verify"]) == 0
    described = capsys.readouterr().out.splitlines()
    assert described[0] == f"npz arrays: {root}"
    assert "train: 4 classes, 12 images" in described
    assert "verified: all 36 images decode" in described

    # Benchmarked by `litemeta bench pipeline`; its images share one stored size, so the
    # cache and decode rows use it too.
    out = tmp_path / "bench"
    argv = ["bench", "pipeline", "--config", str(config_file), "--tasks", "2", "--workers", "0"]
    assert main([*argv, "--no-model", "--decode-sizes", "24", "--out", str(out)]) == 0
    rows = json.loads((out / "pipeline.json").read_text())["rows"]
    assert [(r["measurement"], r["tasks"], r["images"]) for r in rows] == [
        ("loader", 2, 18),  # 3-way 2-shot with 1 query per class: 9 images a task
        ("cache", 2, 18),
        ("cache", 2, 18),
        ("decode", 2, 18),
        ("decode", 2, 18),
    ]
    report = (out / "pipeline.md").read_text()
    assert "2 npz train tasks (3-way 2-shot, 1 queries per class)" in report
    assert "emoji set instead" not in report
    assert "stored 16 px" in report


def test_data_info_recognises_a_vtab_export(tmp_path):
    for folder, count in (("train800", 2), ("val200", 1), ("test", 3)):
        for name in ("cat", "dog"):
            (tmp_path / folder / name).mkdir(parents=True)
            for n in range(count):
                Image.new("RGB", (8, 8)).save(tmp_path / folder / name / f"{n}.png")
    lines = describe(str(tmp_path)).splitlines()
    assert lines[0] == f"VTAB task: {tmp_path}"
    assert lines[1:4] == ["train800/:", "  classes: 2", "  images: 4 (2-2 per class)"]
    assert "test/:" in lines and "  images: 6 (3-3 per class)" in lines
