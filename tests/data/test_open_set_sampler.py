"""Open-set episodes (PEELER, Liu et al., CVPR 2020): the known part as the fixed-way sampler
draws it, plus query items of classes outside the task."""

import pytest
import torch

from litemeta.data.base import class_pools
from litemeta.data.episodic import EpisodicTaskDataset, task_rng
from litemeta.data.samplers import FixedWaySampler, OpenSetSampler, VariableWaySampler
from tests.data.synthetic import SyntheticCollection


def _styled_pools(classes: int = 12):
    styles = [["a", "a", "a", "b", "b", "b"]] * classes
    return class_pools(SyntheticCollection([6] * classes, styles=styles), ["a"], ["b"])


def test_the_known_part_is_the_fixed_way_episode_of_the_same_draws():
    pools = _styled_pools()
    base = FixedWaySampler(way=4, shot=2, query=2)
    sampler = OpenSetSampler(base, unknown_classes=3)
    sampler.check(pools)
    for index in range(30):
        spec = sampler.sample(pools, task_rng(5, index))
        known = base.sample(pools, task_rng(5, index))
        assert spec.classes == known.classes
        assert (spec.support, spec.query) == (known.support, known.query)
        unknown_classes = [class_id for class_id, _ in spec.unknown]
        assert len(spec.unknown) == 3 * 2
        assert sorted(set(unknown_classes)) == sorted(unknown_classes)[::2]  # 2 items each
        assert not set(unknown_classes) & set(spec.classes)
        for class_id, item in spec.unknown:  # drawn from the query styles
            assert item in pools[class_id].query.tolist()
        assert len(set(spec.unknown)) == len(spec.unknown)


def test_it_needs_classes_beyond_the_way_and_fixed_way_episodes():
    with pytest.raises(ValueError, match="need at least 14 classes but only 12"):
        OpenSetSampler(FixedWaySampler(10, 1, 1), unknown_classes=4).check(_styled_pools())
    with pytest.raises(ValueError, match="fixed-way episodes only"):
        OpenSetSampler(VariableWaySampler(), unknown_classes=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1, got 0"):
        OpenSetSampler(FixedWaySampler(2, 1, 1), unknown_classes=0)


def test_a_task_carries_the_unknown_images_unlabelled():
    collection = SyntheticCollection([6] * 8)
    dataset = EpisodicTaskDataset(collection, FixedWaySampler(3, 2, 2), 4, seed=3)
    open_set = dataset.with_sampler(OpenSetSampler(dataset.sampler, unknown_classes=2))
    for index in range(4):
        task, known = open_set[index], dataset[index]
        assert known.unknown_images is None
        for name in ("support_images", "support_labels", "query_images", "query_labels"):
            assert torch.equal(getattr(task, name), getattr(known, name))
        spec = open_set.spec(index)
        assert task.unknown_images is not None and task.unknown_images.shape == (4, 3, 8, 8)
        found = task.unknown_images[:, :2, 0, 0].tolist()  # channel 0: class, 1: item
        assert found == [[class_id, item] for class_id, item in spec.unknown]
        assert not set(task.unknown_images[:, 0, 0, 0].tolist()) & set(spec.classes)
