import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from litemeta.data.episodic import EpisodicTaskDataset
from litemeta.data.images import ImageLoadError
from litemeta.data.metadataset import MetaDatasetRecords, read_dataset_spec
from litemeta.data.samplers import FixedWaySampler, VariableWaySampler
from litemeta.data.tfrecord import CorruptRecordError, write_records
from tests.data.tf_example import make_example

COUNTS = [6, 7, 8, 5, 6, 9]  # classes 0-2 train, 3 valid, 4-5 test


def jpeg(colour, size=(24, 18)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def colour_of(class_id, item):
    return (40 * class_id, 25 * item, 128)


@pytest.fixture
def records_root(tmp_path):
    root = tmp_path / "toy_source"
    root.mkdir()
    for class_id, count in enumerate(COUNTS):
        write_records(
            root / f"{class_id}.tfrecords",
            [
                make_example(image=jpeg(colour_of(class_id, i)), label=class_id)
                for i in range(count)
            ],
        )
    spec = {
        "name": "toy_source",
        "classes_per_split": {"TRAIN": 3, "VALID": 1, "TEST": 2},
        "images_per_class": {str(c): n for c, n in enumerate(COUNTS)},
        "class_names": {str(c): f"n{c:03d}" for c in range(len(COUNTS))},
        "path": str(root),
        "file_pattern": "{}.tfrecords",
        "__class__": "DatasetSpecification",
    }
    (root / "dataset_spec.json").write_text(json.dumps(spec))
    return root


def test_reads_splits_names_and_images(records_root):
    train = MetaDatasetRecords(records_root, split="train")
    assert train.class_names == ["n000", "n001", "n002"]
    assert [train.num_items(c) for c in range(3)] == COUNTS[:3]
    test = MetaDatasetRecords(records_root, split="test", decode_size=16)
    assert test.class_ids == [4, 5]
    image = test.load_image(1, 4).numpy()
    assert image.shape == (3, 16, 16)
    assert np.abs(image[:, 8, 8].astype(int) - colour_of(5, 4)).max() <= 8


def test_tasks_draw_records_by_random_access(records_root):
    collection = MetaDatasetRecords(records_root, split="train", max_open_files=2, decode_size=16)
    dataset = EpisodicTaskDataset(collection, FixedWaySampler(3, 2, 2), 8, seed=3)
    items_seen = set()
    for index in range(len(dataset)):
        spec, task = dataset.spec(index), dataset[index]
        for row, (label, item) in enumerate(spec.support):
            expected = colour_of(collection.class_ids[spec.classes[label]], item)
            got = task.support_images[row, :, 8, 8].numpy().astype(int)
            assert np.abs(got - expected).max() <= 8
            items_seen.add(item)
        assert len(collection.files) <= 2, "open handles stay within max_open_files"
    assert max(items_seen) >= 4, "items come from anywhere in the file, not only its start"


def test_variable_way_tasks_in_workers(records_root):
    collection = MetaDatasetRecords(records_root, split="train", decode_size=8)
    sampler = VariableWaySampler(min_way=2, max_way=3)
    dataset = EpisodicTaskDataset(collection, sampler, 4, seed=1)
    tasks = list(DataLoader(dataset, batch_size=None, num_workers=2))
    assert [t.way for t in tasks] == [dataset.spec(i).way for i in range(4)]


def test_data_checksum_and_count_mismatch(records_root):
    path = records_root / "1.tfrecords"
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    checked = MetaDatasetRecords(records_root, split="train", verify_crc=True)
    with pytest.raises(ImageLoadError, match=r"1\.tfrecords@0.*checksum"):
        checked.load_image(1, 0)
    spec = json.loads((records_root / "dataset_spec.json").read_text())
    spec["images_per_class"]["2"] = 99
    (records_root / "dataset_spec.json").write_text(json.dumps(spec))
    with pytest.raises(CorruptRecordError, match=r"class 2 has 8 records.*says 99"):
        MetaDatasetRecords(records_root, split="train").index_all()


def test_missing_directory_and_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MetaDatasetRecords(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=r"dataset_spec\.json"):
        MetaDatasetRecords(tmp_path)


def test_bilevel_and_hierarchical_specs(tmp_path):
    bilevel = {
        "__class__": "BiLevelDatasetSpecification",
        "name": "omniglot",
        "superclasses_per_split": {"TRAIN": 2, "VALID": 1, "TEST": 1},
        "classes_per_superclass": {"0": 3, "1": 2, "2": 4, "3": 1},
        "images_per_class": {str(c): 20 for c in range(10)},
        "superclass_names": {},
        "class_names": {str(c): f"char{c}" for c in range(10)},
        "file_pattern": "{}.tfrecords",
    }
    (tmp_path / "b.json").write_text(json.dumps(bilevel))
    spec = read_dataset_spec(tmp_path / "b.json")
    assert spec.classes_per_split == {"TRAIN": [0, 1, 2, 3, 4], "VALID": [5, 6, 7, 8], "TEST": [9]}

    def node(wn, children=()):
        return {
            "wn_id": wn,
            "words": wn,
            "children_ids": list(children),
            "parents_ids": [],
        }

    hierarchical = {
        "__class__": "HierarchicalDatasetSpecification",
        "name": "ilsvrc_2012",
        "split_subgraphs": {
            "TRAIN": [node("root", ["a", "b"]), node("a"), node("b")],
            "VALID": [node("c")],
            "TEST": [node("d")],
        },
        "images_per_class": {
            "TRAIN": {"root": 30, "a": 10, "b": 20},
            "VALID": {"c": 5},
            "TEST": {"d": 7},
        },
        "class_names": {"0": "a", "1": "b", "2": "c", "3": "d"},
        "file_pattern": "{}.tfrecords",
    }
    (tmp_path / "h.json").write_text(json.dumps(hierarchical))
    spec = read_dataset_spec(tmp_path / "h.json")
    assert spec.classes_per_split["TRAIN"] == [0, 1]
    assert spec.images_per_class == {0: 10, 1: 20, 2: 5, 3: 7}


def _spec_with(records_root, change):
    spec = json.loads((records_root / "dataset_spec.json").read_text())
    (records_root / "dataset_spec.json").write_text(json.dumps(change(spec)))
    return records_root / "dataset_spec.json"


def _without(key):
    def change(spec):
        del spec[key]
        return spec

    return change


def _set(key, value):
    return lambda spec: {**spec, key: value}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_without("classes_per_split"), r"classes_per_split must be a JSON object, got nothing"),
        (lambda spec: [spec], r"the file must be a JSON object, got \[\{"),
        (_set("classes_per_split", {"TRAIN": -2}), r"classes_per_split\['TRAIN'\] must be a whole"),
        (_set("classes_per_split", {"TRIAN": 2}), r"a key of classes_per_split must be TRAIN"),
        (_set("images_per_class", {"x": 2}), r"a key of images_per_class must be a class id"),
        (_set("images_per_class", {"0": "6"}), r"images_per_class\['0'\] must be a whole number"),
        (_set("file_pattern", "all.tfrecords"), r"file_pattern must be a file name with"),
    ],
)
def test_malformed_spec_names_the_file_and_the_key(records_root, change, message):
    path = _spec_with(records_root, change)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}"):
        MetaDatasetRecords(records_root)


def test_spec_that_is_not_json_names_the_file(records_root):
    (records_root / "dataset_spec.json").write_text('{"name": "toy",')
    with pytest.raises(ValueError, match=r"dataset_spec\.json is not valid JSON \(.*regenerate"):
        MetaDatasetRecords(records_root)


def test_bilevel_and_hierarchical_specs_with_missing_entries_name_them(tmp_path):
    bilevel = {
        "__class__": "BiLevelDatasetSpecification",
        "superclasses_per_split": {"TRAIN": 2, "VALID": 1, "TEST": 0},
        "classes_per_superclass": {"0": 3, "1": 2},
    }
    (tmp_path / "b.json").write_text(json.dumps(bilevel))
    with pytest.raises(ValueError, match=r"b\.json: classes_per_superclass has no entry for "):
        read_dataset_spec(tmp_path / "b.json")
    hierarchical = {
        "__class__": "HierarchicalDatasetSpecification",
        "split_subgraphs": {"TRAIN": [{"wn_id": "a"}, {"wn_id": "zzz"}]},
        "images_per_class": {"TRAIN": {"a": 3, "zzz": 4}},
        "class_names": {"0": "a"},
    }
    (tmp_path / "h.json").write_text(json.dumps(hierarchical))
    with pytest.raises(ValueError, match=r"h\.json: class_names has no entry for 'zzz'"):
        read_dataset_spec(tmp_path / "h.json")
    hierarchical["class_names"]["1"] = "zzz"
    del hierarchical["images_per_class"]["TRAIN"]["zzz"]
    (tmp_path / "h.json").write_text(json.dumps(hierarchical))
    with pytest.raises(ValueError, match=r"images_per_class\['TRAIN'\] has no entry for 'zzz'"):
        read_dataset_spec(tmp_path / "h.json")
