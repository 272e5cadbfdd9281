"""Multi-source Meta-Dataset episodes: the source of each episode is drawn uniformly and
independently (google-research/meta-dataset, ``data/pipeline.py``,
``make_multisource_episode_pipeline``: ``sample_from_datasets`` without weights), and the
episode lies entirely in that source. Record folders are written by ``write_source``; the
sources in LITE's extras format (MNIST, CIFAR) read like any other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from litemeta.data import (
    EpisodicTaskDataset,
    MetaDatasetRecords,
    MixedSourceTasks,
    PerSourceTasks,
    VariableWaySampler,
)
from litemeta.data.episodic import task_rng
from litemeta.data.tfrecord import write_records
from tests.data.test_metadataset import jpeg
from tests.data.tf_example import make_example

#: Chi-square critical values at p = 0.001 (tables), by degrees of freedom.
CHI2_999 = {2: 13.816, 8: 26.124}


def source_colour(source_index: int, class_id: int) -> tuple[int, int, int]:
    return (50 * source_index + 20, (4 * class_id) % 240 + 10, 200)


def write_source(
    root: Path,
    name: str,
    counts: dict[str, list[int]],
    *,
    index: int = 0,
    spec_only: bool = False,
    class_name: str = "{source}-{id}",
    size: tuple[int, int] = (20, 16),
) -> Path:
    """A flat Meta-Dataset record folder: ``counts[split]`` images per class, class ids
    contiguous train, validation, test; every image of class ``c`` is ``source_colour``."""
    folder = root / name
    folder.mkdir(parents=True)
    images, class_id = {}, 0
    for split in ("TRAIN", "VALID", "TEST"):
        for count in counts.get(split, []):
            images[class_id] = count
            if not spec_only:
                image = jpeg(source_colour(index, class_id), size)
                write_records(
                    folder / f"{class_id}.tfrecords",
                    [make_example(image=image, label=class_id)] * count,
                )
            class_id += 1
    spec = {
        "name": name,
        "classes_per_split": {s: len(counts.get(s, [])) for s in ("TRAIN", "VALID", "TEST")},
        "images_per_class": {str(c): n for c, n in images.items()},
        "class_names": {str(c): class_name.format(source=name, id=c) for c in images},
        "path": str(folder),
        "file_pattern": "{}.tfrecords",
        "__class__": "DatasetSpecification",
    }
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    return folder


#: Three sources of very different sizes: the source draw must not depend on size.
SOURCES = {
    "big": {"TRAIN": [40] * 60, "TEST": [12] * 6},
    "small": {"TRAIN": [6] * 5, "TEST": [8] * 5},
    "medium": {"TRAIN": [20] * 12, "TEST": [10] * 7},
}


def by_source(root: Path, split: str, num_tasks: int = 1, seed: int = 0, **sampler) -> dict:
    sampler = VariableWaySampler(**{"min_way": 5, "max_way": 10, **sampler})
    return {
        name: EpisodicTaskDataset(
            MetaDatasetRecords(root / name, split=split, decode_size=8),
            sampler,
            num_tasks,
            seed=seed,
        )
        for name in SOURCES
    }


@pytest.fixture
def records(tmp_path: Path) -> Path:
    for index, (name, counts) in enumerate(SOURCES.items()):
        write_source(tmp_path, name, counts, index=index, spec_only=True)
    return tmp_path


def test_each_source_is_drawn_with_probability_one_over_the_number_of_sources(records):
    tasks = MixedSourceTasks(by_source(records, "train"), num_tasks=3000, seed=7)
    drawn = [tasks.spec(i)[0] for i in range(len(tasks))]
    assert drawn == [tasks.source_of(i) for i in range(len(tasks))]
    counts = np.array([drawn.count(name) for name in SOURCES])
    expected = len(drawn) / 3  # Meta-Dataset: uniform over sources, whatever their size
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_999[2], counts
    # Each count is also within 4 binomial standard deviations of n / 3.
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(len(drawn) * (1 / 3) * (2 / 3)))

    # Independent per episode: consecutive pairs of sources are uniform over the 9 pairs.
    index = {name: i for i, name in enumerate(SOURCES)}
    pairs = np.zeros((3, 3))
    for first, second in zip(drawn[::2], drawn[1::2], strict=True):
        pairs[index[first], index[second]] += 1
    expected_pair = pairs.sum() / 9
    assert float(((pairs - expected_pair) ** 2 / expected_pair).sum()) < CHI2_999[8], pairs


def test_a_mixed_task_is_its_sources_episode_and_depends_on_seed_and_index_only(records):
    sources = by_source(records, "train")
    tasks = MixedSourceTasks(sources, num_tasks=50, seed=3)
    again = MixedSourceTasks(by_source(records, "train", num_tasks=9, seed=99), 50, seed=3)
    for i in (0, 17, 49):
        name, spec = tasks.spec(i)
        assert again.spec(i) == (name, spec)
        rng = task_rng(3, i)
        assert list(SOURCES)[int(rng.integers(3))] == name
        assert spec == sources[name].draw(rng)  # then the source's own sampler
        classes = sources[name].collection.num_classes
        assert all(0 <= c < classes for c in spec.classes)
    other_seed = MixedSourceTasks(sources, num_tasks=50, seed=4)
    assert [other_seed.spec(i) for i in range(5)] != [tasks.spec(i) for i in range(5)]
    with pytest.raises(IndexError, match="out of range"):
        tasks.spec(50)
    with pytest.raises(ValueError, match="no sources"):
        MixedSourceTasks({}, 5)


def test_every_image_of_a_mixed_task_comes_from_its_source(tmp_path):
    for index, (name, counts) in enumerate(SOURCES.items()):
        write_source(tmp_path, name, counts, index=index)
    tasks = MixedSourceTasks(by_source(tmp_path, "train"), num_tasks=9, seed=1)
    seen = set()
    for i in range(len(tasks)):
        source, spec = tasks.spec(i)
        task = tasks[i]
        assert task.way == spec.way and len(task.query_labels) == len(spec.query)
        seen.add(source)
        assert all(name.startswith(f"{source}-") for name in task.class_names)
        source_index = list(SOURCES).index(source)
        for images, labels in (
            (task.support_images, task.support_labels),
            (task.query_images, task.query_labels),
        ):
            for image, label in zip(images, labels, strict=True):
                class_id = int(task.class_names[label].split("-")[1])
                expected = np.array(source_colour(source_index, class_id))
                assert np.abs(image[:, 4, 4].numpy().astype(int) - expected).max() <= 10
    assert seen == set(SOURCES)


def test_per_source_tasks_are_each_sources_own_tasks_in_turn(records):
    sources = by_source(records, "test", num_tasks=4, seed=2)
    tasks = PerSourceTasks(sources)
    assert len(tasks) == 12
    assert [tasks.source_of(i) for i in range(12)] == [n for n in SOURCES for _ in range(4)]
    for i in range(12):
        name = tasks.source_of(i)
        alone = EpisodicTaskDataset(
            MetaDatasetRecords(records / name, split="test"),
            VariableWaySampler(min_way=5, max_way=10),
            4,
            seed=2,
        )
        assert tasks.spec(i) == (name, alone.spec(i % 4))
    with pytest.raises(IndexError, match="out of range"):
        tasks.source_of(12)


def mnist_like(root: Path) -> Path:
    """MNIST as LITE's extras/prepare_extra_dataset.py writes it, after its README's step of
    replacing the spec with extras/mnist/dataset_spec.json: classes ``class_0``..``class_9``
    of 84 x 84 RGB images (PNGs re-encoded as JPEG by Meta-Dataset's converter), all in the
    TRAIN split, VALID and TEST empty (here 4 images a class instead of about 1,000)."""
    return write_source(
        root, "mnist", {"TRAIN": [4] * 10}, index=3, class_name="class_{id}", size=(84, 84)
    )


def cifar_like(root: Path) -> Path:
    """CIFAR-10 as CNAPs' src/prepare_extra_datasets.py writes it: the test batch's classes
    by name (``airplane``...), 84 x 84, every class in the TEST split."""
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    folder = write_source(root, "cifar10", {"TEST": [3] * 5}, index=4, size=(84, 84))
    spec = json.loads((folder / "dataset_spec.json").read_text())
    spec["class_names"] = dict(enumerate(names))
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    return folder


def test_extra_sources_in_the_reference_format_read_as_sources(tmp_path):
    mnist = MetaDatasetRecords(mnist_like(tmp_path), split="train", decode_size=32)
    assert mnist.class_names == [f"class_{c}" for c in range(10)]
    assert mnist.load_image(7, 3).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="no classes in split 'test'"):
        MetaDatasetRecords(tmp_path / "mnist", split="test")
    cifar = MetaDatasetRecords(cifar_like(tmp_path), split="test")
    assert cifar.class_names[:2] == ["airplane", "automobile"]
    assert cifar.load_image(4, 2).shape == (3, 84, 84)
    cifar.index_all()
