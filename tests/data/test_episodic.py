"""Episode specs into tasks: the images and labels of each spec, the same tasks for a seed
whatever the loader workers, and replacements for unreadable images that never repeat one
of the task's images."""

import pytest
import torch
from torch.utils.data import DataLoader

from litemeta.data.base import class_pools
from litemeta.data.episodic import EpisodicTaskDataset, load_task, task_rng
from litemeta.data.images import ImageLoadError
from litemeta.data.samplers import EpisodeSpec, FixedWaySampler, VariableWaySampler
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


class _MixedSizes(SyntheticCollection):
    """Class 1's images are stored at 6 px, the others at 8 px."""

    def read_item(self, class_id: int, item: int) -> torch.Tensor:
        image = super().read_item(class_id, item)
        return image[:, :6, :6] if class_id == 1 and self.decode_size is None else image


def test_task_i_depends_only_on_the_seed_and_i():
    first = task_rng(3, 5).integers(0, 2**31, size=4)
    assert first.tolist() == task_rng(3, 5).integers(0, 2**31, size=4).tolist()
    assert first.tolist() != task_rng(3, 6).integers(0, 2**31, size=4).tolist()
    assert first.tolist() != task_rng(4, 5).integers(0, 2**31, size=4).tolist()
    dataset = EpisodicTaskDataset(SyntheticCollection([9] * 8), FixedWaySampler(4, 2, 1), 5)
    backwards = [dataset.spec(i) for i in reversed(range(5))][::-1]
    assert backwards == [dataset.spec(i) for i in range(5)]
    assert len({spec.classes for spec in backwards}) > 1, "tasks differ from one another"


def test_the_dataset_checks_its_size_and_indices():
    collection, sampler = SyntheticCollection([4] * 4), FixedWaySampler(2, 1, 1)
    with pytest.raises(ValueError, match="num_tasks must be at least 1, got 0"):
        EpisodicTaskDataset(collection, sampler, 0)
    dataset = EpisodicTaskDataset(collection, sampler, 3)
    with pytest.raises(IndexError, match=r"task index 3 out of range 0\.\.2"):
        dataset[3]


def test_images_of_different_stored_sizes_need_a_decode_size():
    collection = _MixedSizes([3, 3])
    spec = EpisodicTaskDataset(collection, FixedWaySampler(2, 1, 1), 1).spec(0)
    with pytest.raises(
        ValueError, match=r"different stored sizes .* give the collection a decode_size"
    ):
        load_task(collection, spec)
    collection.decode_size = 5
    task = load_task(collection, spec)
    assert task.support_images.shape == (2, 3, 5, 5) and task.query_images.shape == (2, 3, 5, 5)


def _items_in(images: torch.Tensor) -> list[int]:
    return images[:, 1, 0, 0].tolist()  # SyntheticCollection writes the item into channel 1


def test_a_skipped_image_is_never_replaced_by_one_the_task_uses():
    """Item 0 is unreadable; the task's query is item 1, the class's next item, so the
    support image must come from item 2: item 1 in both sets would inflate accuracy."""
    collection = SyntheticCollection([4], broken={(0, 0)}, on_error="skip")
    spec = EpisodeSpec(classes=(0,), support=((0, 0),), query=((0, 1),))
    with pytest.warns(UserWarning, match="synthetic/0/0"):
        task = load_task(collection, spec)
    assert _items_in(task.support_images) == [2]
    assert _items_in(task.query_images) == [1]


def test_a_replacement_comes_from_the_same_sides_pool():
    """Support styles {a}, query styles {b}: a broken support image is replaced by an unused
    style-a image (item 4), not by the nearer style-b item 1."""
    styles = [["a", "b", "a", "b", "a"]]
    collection = SyntheticCollection([5], styles=styles, broken={(0, 0)}, on_error="skip")
    pools = class_pools(collection, support_styles=["a"], query_styles=["b"])
    spec = EpisodeSpec(classes=(0,), support=((0, 0), (0, 2)), query=((0, 3),))
    with pytest.warns(UserWarning, match="synthetic/0/0"):
        task = load_task(collection, spec, pools)
    assert _items_in(task.support_images) == [4, 2]
    spent = EpisodeSpec(classes=(0,), support=((0, 0), (0, 2), (0, 4)), query=((0, 3),))
    with pytest.raises(ImageLoadError, match=r"no readable image in class 'class0'.*synthetic/0/0"):
        load_task(collection, spent, pools)


def test_an_episodic_dataset_replaces_from_its_own_pools():
    collection = SyntheticCollection([3] * 3, broken={(c, 0) for c in range(3)}, on_error="skip")
    dataset = EpisodicTaskDataset(collection, FixedWaySampler(3, 1, 1), 10)
    with pytest.warns(UserWarning):
        for index in range(len(dataset)):
            task = dataset[index]
            for label in range(3):
                support = _items_in(task.support_images[task.support_labels == label])
                query = _items_in(task.query_images[task.query_labels == label])
                assert not set(support) & set(query)
