"""Episode specs into tasks: the images and labels of each spec, the same tasks for a seed
whatever the loader workers."""

import torch
from torch.utils.data import DataLoader

from litemeta.data.episodic import EpisodicTaskDataset
from litemeta.data.samplers import FixedWaySampler, VariableWaySampler
from tests.data.synthetic import SyntheticCollection
from tests.data.test_samplers import SIZES


def test_load_task_builds_a_valid_task():
    collection = SyntheticCollection([6] * 6)
    dataset = EpisodicTaskDataset(collection, FixedWaySampler(3, 2, 2), 4)
    task = dataset[0]
    assert task.support_images.shape == (6, 3, 8, 8) and task.support_images.dtype == torch.uint8
    assert task.query_images.shape == (6, 3, 8, 8)
    spec = dataset.spec(0)
    for row, (label, item) in enumerate(spec.support):
        assert task.support_labels[row] == label
        assert task.support_images[row, 0, 0, 0] == spec.classes[label]
        assert task.support_images[row, 1, 0, 0] == item
    assert task.class_names == [f"class{c}" for c in spec.classes]


def test_same_seed_same_tasks_across_worker_counts():
    collection = SyntheticCollection(SIZES, decode_size=4)
    make = lambda seed: EpisodicTaskDataset(collection, VariableWaySampler(), 6, seed=seed)  # noqa: E731
    serial = [task.support_images for task in DataLoader(make(7), batch_size=None)]
    parallel = [task.support_images for task in DataLoader(make(7), batch_size=None, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    other = [task.support_images for task in DataLoader(make(8), batch_size=None)]
    same = [a.shape == b.shape and torch.equal(a, b) for a, b in zip(serial, other, strict=True)]
    assert not all(same)
