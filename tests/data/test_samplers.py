import numpy as np
import pytest

from litemeta.data.base import class_pools
from litemeta.data.episodic import EpisodicTaskDataset, task_rng
from litemeta.data.samplers import FixedWaySampler, VariableWaySampler
from tests.data.synthetic import SyntheticCollection

# Class sizes like Meta-Dataset's: tiny (Omniglot-like), mid and large classes.
SIZES = [2, 3, 5, 20, 20, 40, 60, 100, 150, 300, 700, 1300] * 6


def assert_disjoint_and_valid(spec, pools):
    for label, class_id in enumerate(spec.classes):
        support = {i for lab, i in spec.support if lab == label}
        query = {i for lab, i in spec.query if lab == label}
        assert not support & query
        pool = pools[class_id]
        assert support <= set(pool.support.tolist())
        allowed = pool.support if pool.shared else pool.query
        assert query <= set(allowed.tolist())
        assert len(support) == sum(1 for lab, _ in spec.support if lab == label)


def test_fixed_way_shapes_and_disjointness():
    pools = class_pools(SyntheticCollection([10] * 8))
    sampler = FixedWaySampler(way=5, shot=3, query=4)
    sampler.check(pools)
    for index in range(50):
        spec = sampler.sample(pools, task_rng(0, index))
        assert spec.way == 5 and len(set(spec.classes)) == 5
        assert spec.support_counts().tolist() == [3] * 5
        assert spec.query_counts().tolist() == [4] * 5
        assert_disjoint_and_valid(spec, pools)


def test_fixed_way_names_small_classes_before_training():
    collection = SyntheticCollection([10, 10, 3, 10, 10, 10])
    with pytest.raises(ValueError, match=r"'class2' \(3\).*Lower shot/query"):
        EpisodicTaskDataset(collection, FixedWaySampler(5, 5, 5), num_tasks=1)


def test_fixed_way_needs_enough_classes():
    with pytest.raises(ValueError, match="at least 5 classes but only 3"):
        FixedWaySampler(5, 1, 1).check(class_pools(SyntheticCollection([5, 5, 5])))


def test_fixed_way_tasks_have_queries_to_be_scored_on():
    with pytest.raises(ValueError, match=r"query >= 1; got 5, 1, 0"):
        FixedWaySampler(5, 1, 0)


def test_variable_way_invariants_over_many_episodes():
    pools = class_pools(SyntheticCollection(SIZES))
    sampler = VariableWaySampler()
    sampler.check(pools)
    ways = []
    for index in range(300):
        spec = sampler.sample(pools, task_rng(1, index))
        sizes = np.array([len(pools[c].support) for c in spec.classes])
        support, query = spec.support_counts(), spec.query_counts()
        ways.append(spec.way)
        assert 5 <= spec.way <= 50
        assert len(spec.support) <= 500
        assert support.min() >= 1
        assert (query == query[0]).all() and 1 <= query[0] <= 10
        assert (query <= sizes // 2).all(), "query must never exceed half of a class"
        assert (support + query <= sizes).all()
        assert_disjoint_and_valid(spec, pools)
    assert min(ways) < 15 and max(ways) > 40, "way should span its range"


def test_variable_way_is_capped_by_available_classes():
    pools = class_pools(SyntheticCollection([30] * 7))
    for index in range(30):
        assert 5 <= VariableWaySampler().sample(pools, task_rng(2, index)).way <= 7


def test_variable_way_support_grows_to_the_budget_on_large_classes():
    pools = class_pools(SyntheticCollection([1000] * 60))
    totals = [len(VariableWaySampler().sample(pools, task_rng(3, i)).support) for i in range(200)]
    assert max(totals) > 400 and max(totals) <= 500


def test_variable_way_shots_are_capped_only_by_remaining_images():
    """Meta-Dataset's ``max_support_size_contrib_per_class`` (100) bounds a class's share
    of the support size, not its shots; those are capped by its ``n_c - q`` images."""
    pools = class_pools(SyntheticCollection([1300] * 5 + [30] * 5))
    sampler = VariableWaySampler(min_way=5, max_way=5)
    shots = []
    for index in range(300):
        spec = sampler.sample(pools, task_rng(6, index))
        sizes = np.array([len(pools[c].support) for c in spec.classes])
        assert (spec.support_counts() <= sizes - spec.query_counts()).all()
        shots.extend(spec.support_counts().tolist())
    assert max(shots) > 150


def test_variable_way_class_imbalance_gives_unequal_shots():
    pools = class_pools(SyntheticCollection([200] * 20))
    spec = VariableWaySampler(min_way=10, max_way=10).sample(pools, task_rng(4, 0))
    assert len(set(spec.support_counts().tolist())) > 1


def test_variable_way_rejects_a_class_with_a_single_image():
    pools = class_pools(SyntheticCollection([10, 10, 1, 10, 10, 10]))
    with pytest.raises(ValueError, match=r"'class2' \(1\).*single image"):
        VariableWaySampler().check(pools)


def test_style_pools_take_support_and_query_from_different_styles():
    styles = [["a", "b", "c", "d"]] * 12
    collection = SyntheticCollection([4] * 12, styles=styles)
    pools = class_pools(collection, support_styles=["a", "b", "c"])
    assert pools[0].support.tolist() == [0, 1, 2] and pools[0].query.tolist() == [3]
    for sampler in (FixedWaySampler(5, 2, 1), VariableWaySampler()):
        sampler.check(pools)
        for index in range(40):
            spec = sampler.sample(pools, task_rng(5, index))
            assert all(item == 3 for _, item in spec.query)
            assert all(item != 3 for _, item in spec.support)
            assert_disjoint_and_valid(spec, pools)
