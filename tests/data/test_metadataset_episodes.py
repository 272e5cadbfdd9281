"""Meta-Dataset episodes against a reference simulation (Triantafillou et al., ICLR 2020).

The reference below is written from the paper's episode-sampling formulas and the
``dataset_spec.json`` layout, reading the raw spec itself: it shares no code with
``litemeta``. Each scenario draws 10,000 episodes from both and compares
episode-level statistics with a two-sample Kolmogorov-Smirnov distance. With 10,000
episodes a side, the distance stays under 0.03 with probability above 0.999 when the
distributions agree; the seeds are fixed, so the test is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from litemeta.data.base import class_pools
from litemeta.data.episodic import task_rng
from litemeta.data.metadataset import MetaDatasetRecords, read_dataset_spec
from litemeta.data.samplers import ClassHierarchy, VariableWaySampler
from litemeta.experiment import DataConfig, SamplerConfig, task_dataset
from tests.data.synthetic import SyntheticCollection

EPISODES = 10_000
KS_TOLERANCE = 0.03

# Meta-Dataset's defaults (paper, appendix; episode_descr_config and sampling.py).
MIN_WAYS, MAX_WAYS = 5, 50
MAX_SUPPORT, MAX_CONTRIB, MAX_QUERY = 500, 100, 10
LOG_WEIGHTS = (np.log(0.5), np.log(2.0))
MAX_SPANNING_LEAVES = 392


# ---------------------------------------------------------------- synthetic specs


def node(wn_id: str, children=()) -> dict:
    return {"wn_id": wn_id, "words": wn_id, "children_ids": list(children), "parents_ids": []}


def imagenet_like_spec(seed: int = 0) -> dict:
    """A WordNet-like DAG: 420 training leaves under one root (which spans more than 392
    leaves, so is never eligible), mid-level nodes above and below 50 leaves, a chain
    node spanning the same leaves as its only child, nodes too small to be eligible, and
    leaves with two parents. Class sizes like ImageNet's (732-1300, mostly 1300)."""
    rng = np.random.default_rng(seed)
    leaves = [f"n{i:05d}" for i in range(420)]
    children: dict[str, list[str]] = {leaf: [] for leaf in leaves}
    children["root"] = []
    start = 0
    for m, size in enumerate([160, 110, 60, 45, 25, 12, 8]):
        mid, members = f"m{m}", leaves[start : start + size]
        start += size
        children["root"].append(mid)
        children[mid] = []
        position = 0
        for g, chunk in enumerate([3, 4, 6, 9, 15, 30] * 10):
            if position >= len(members):
                break
            group, part = f"{mid}g{g}", members[position : position + chunk]
            position += chunk
            children[mid].append(group)
            children[group] = list(part)
    # m5 and its only child span the same 12 leaves: two nodes, twice the chance
    children["chain"], children["m5"] = children["m5"], ["chain"]
    for x in range(5):  # cross-links: these leaves get a second parent
        cross = f"x{x}"
        children["root"].append(cross)
        children[cross] = sorted(rng.choice(leaves, size=7, replace=False).tolist())
    train = [node(wn, kids) for wn, kids in sorted(children.items())]
    sizes = np.where(rng.random(len(leaves)) < 0.8, 1300, rng.integers(732, 1300, len(leaves)))
    other = {"VALID": [node("v0", ["v1", "v2"]), node("v1"), node("v2")], "TEST": [node("t1")]}
    names = [*leaves, "v1", "v2", "t1"]
    images = {
        "TRAIN": {leaf: int(n) for leaf, n in zip(leaves, sizes, strict=True)},
        "VALID": {"v1": 900, "v2": 800},
        "TEST": {"t1": 1000},
    }
    return {
        "__class__": "HierarchicalDatasetSpecification",
        "name": "ilsvrc_like",
        "split_subgraphs": {"TRAIN": train, **other},
        "images_per_class": images,
        "class_names": {str(i): name for i, name in enumerate(names)},
        "file_pattern": "{}.tfrecords",
    }


def omniglot_like_spec(seed: int = 1) -> dict:
    """30 training alphabets of 14-55 characters (Omniglot's range), 20 images each."""
    rng = np.random.default_rng(seed)
    per_alphabet = [14, 55, *rng.integers(14, 56, size=28).tolist()] + [20] * 5 + [30] * 5
    total = sum(per_alphabet)
    return {
        "__class__": "BiLevelDatasetSpecification",
        "name": "omniglot_like",
        "superclasses_per_split": {"TRAIN": 30, "VALID": 5, "TEST": 5},
        "classes_per_superclass": {str(s): n for s, n in enumerate(per_alphabet)},
        "images_per_class": {str(c): 20 for c in range(total)},
        "superclass_names": {str(s): f"alphabet{s}" for s in range(len(per_alphabet))},
        "class_names": {str(c): f"char{c}" for c in range(total)},
        "file_pattern": "{}.tfrecords",
    }


def flat_spec(seed: int = 2) -> dict:
    """300 training classes of 20 to 1000 images (Fungi- or Aircraft-like imbalance)."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(np.exp(rng.uniform(np.log(20), np.log(1000), size=320)).astype(int), 20, 1000)
    return {
        "__class__": "DatasetSpecification",
        "name": "flat",
        "classes_per_split": {"TRAIN": 300, "VALID": 10, "TEST": 10},
        "images_per_class": {str(c): int(n) for c, n in enumerate(sizes)},
        "class_names": {str(c): f"c{c}" for c in range(len(sizes))},
        "file_pattern": "{}.tfrecords",
    }


# ---------------------------------------------------------------- reference simulation


@dataclass
class Episode:
    classes: np.ndarray  # dataset class ids
    shots: np.ndarray
    num_query: int


class ReferenceEpisodes:
    """Meta-Dataset's episode distribution for the TRAIN split of a raw spec dict."""

    def __init__(self, raw: dict) -> None:
        kind = raw["__class__"]
        self.nodes: list[list[int]] | None = None
        self.alphabets: list[list[int]] | None = None
        if kind == "HierarchicalDatasetSpecification":
            ids = {name: int(i) for i, name in raw["class_names"].items()}
            graph = {n["wn_id"]: n["children_ids"] for n in raw["split_subgraphs"]["TRAIN"]}
            self.images = {ids[wn]: n for wn, n in raw["images_per_class"]["TRAIN"].items()}

            def leaves_under(wn: str) -> set[str]:
                if not graph[wn]:
                    return {wn}
                return set().union(*(leaves_under(child) for child in graph[wn]))

            self.nodes = []
            for wn in sorted(graph):
                spanned = leaves_under(wn)
                if graph[wn] and MIN_WAYS <= len(spanned) <= MAX_SPANNING_LEAVES:
                    self.nodes.append(sorted(ids[leaf] for leaf in spanned))
        elif kind == "BiLevelDatasetSpecification":
            per_super = raw["classes_per_superclass"]
            counts = [int(per_super[str(s)]) for s in range(raw["superclasses_per_split"]["TRAIN"])]
            ends = np.cumsum(counts)
            self.alphabets = [list(range(e - n, e)) for e, n in zip(ends, counts, strict=True)]
            self.images = {int(c): n for c, n in raw["images_per_class"].items()}
        else:
            train = raw["classes_per_split"]["TRAIN"]
            self.images = {c: raw["images_per_class"][str(c)] for c in range(train)}

    def classes(self, rng: np.random.Generator) -> np.ndarray:
        if self.nodes is not None:
            leaves = np.array(self.nodes[rng.integers(len(self.nodes))])
            if len(leaves) > MAX_WAYS:
                leaves = rng.permutation(leaves)[:MAX_WAYS]
            return leaves
        if self.alphabets is not None:
            pool = np.array(self.alphabets[rng.integers(len(self.alphabets))])
        else:
            pool = np.array(sorted(self.images))
        way = rng.integers(MIN_WAYS, min(MAX_WAYS, len(pool)) + 1)
        return rng.permutation(pool)[:way]

    def episode(self, rng: np.random.Generator) -> Episode:
        classes = self.classes(rng)
        n = np.array([self.images[c] for c in classes])
        q = min(MAX_QUERY, int((n // 2).min()))
        remaining = n - q
        beta = rng.uniform()  # [0, 1): floor(beta * x + 1) as in the paper's appendix
        size = min(MAX_SUPPORT, int(np.floor(beta * np.minimum(MAX_CONTRIB, remaining) + 1).sum()))
        weights = n * np.exp(rng.uniform(*LOG_WEIGHTS, size=len(n)))
        desired = np.floor(weights / weights.sum() * (size - len(n))).astype(int) + 1
        return Episode(classes, np.minimum(desired, remaining), q)


# ---------------------------------------------------------------- comparison


def ks_distance(a, b) -> float:
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def statistics(episodes: list[Episode], images: dict[int, int]) -> dict[str, np.ndarray]:
    def small_share(e: Episode) -> float:
        small = np.array([images[c] <= 60 for c in e.classes])
        return e.shots[small].sum() / e.shots.sum()

    return {
        "way": np.array([len(e.classes) for e in episodes]),
        "support size": np.array([e.shots.sum() for e in episodes]),
        "query size": np.array([e.num_query * len(e.classes) for e in episodes]),
        "max shots": np.array([e.shots.max() for e in episodes]),
        "min shots": np.array([e.shots.min() for e in episodes]),
        "share of classes <= 60 images": np.array([small_share(e) for e in episodes]),
    }


def litemeta_episodes(root, raw: dict) -> list[Episode]:
    (root / "dataset_spec.json").write_text(json.dumps(raw))
    records = MetaDatasetRecords(root, split="train")
    pools = class_pools(records)
    sampler = VariableWaySampler(hierarchy=records.hierarchy)
    sampler.check(pools)
    episodes = []
    for index in range(EPISODES):
        spec = sampler.sample(pools, task_rng(11, index))
        query = spec.query_counts()
        assert (query == query[0]).all()
        classes = np.array([records.class_ids[c] for c in spec.classes])
        episodes.append(Episode(classes, spec.support_counts(), int(query[0])))
    return episodes


SCENARIOS = {"imagenet": imagenet_like_spec, "omniglot": omniglot_like_spec, "flat": flat_spec}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """litemeta's episodes of a scenario, drawn once for the tests that share them."""
    cache: dict[str, list[Episode]] = {}

    def draw(scenario: str) -> list[Episode]:
        if scenario not in cache:
            root = tmp_path_factory.mktemp(scenario)
            cache[scenario] = litemeta_episodes(root, SCENARIOS[scenario]())
        return cache[scenario]

    return draw


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_episode_statistics_match_the_reference(scenario, drawn):
    raw = SCENARIOS[scenario]()
    ours = drawn(scenario)
    reference = ReferenceEpisodes(raw)
    rng = np.random.default_rng(12)
    theirs = [reference.episode(rng) for _ in range(EPISODES)]
    ours_stats = statistics(ours, reference.images)
    their_stats = statistics(theirs, reference.images)
    for name, values in ours_stats.items():
        distance = ks_distance(values, their_stats[name])
        assert distance < KS_TOLERANCE, f"{scenario}: {name} differs (KS distance {distance:.3f})"
    for episode in ours:  # invariants of every episode
        n = np.array([reference.images[c] for c in episode.classes])
        assert len(set(episode.classes.tolist())) == len(episode.classes)
        assert MIN_WAYS <= len(episode.classes) <= MAX_WAYS
        assert episode.shots.sum() <= MAX_SUPPORT and episode.shots.min() >= 1
        assert 2 * episode.num_query <= n.min() and episode.num_query <= MAX_QUERY
        assert (episode.shots <= n - episode.num_query).all()
    if scenario == "imagenet":
        over = np.mean([(e.shots > MAX_CONTRIB).any() for e in ours])
        over_reference = np.mean([(e.shots > MAX_CONTRIB).any() for e in theirs])
        # about 15% here; the binomial standard error of the difference is 0.005
        assert over > 0.1 and abs(over - over_reference) < 0.02


def test_imagenet_episodes_come_from_one_eligible_node(drawn):
    raw = imagenet_like_spec()
    ours = drawn("imagenet")
    nodes = [frozenset(leaves) for leaves in ReferenceEpisodes(raw).nodes]
    assert len(nodes) > 20 and min(map(len, nodes)) >= MIN_WAYS
    counts = dict.fromkeys(nodes, 0)
    subsampled = 0
    for episode in ours:
        classes = frozenset(episode.classes.tolist())
        if len(classes) == MAX_WAYS and classes not in counts:
            assert any(classes <= leaves for leaves in nodes if len(leaves) > MAX_WAYS)
            subsampled += 1
        else:
            counts[classes] += 1  # KeyError: not exactly one eligible node's leaves
    # Each eligible node is drawn with probability 1/len(nodes); nodes with the same
    # leaves (the chain) add up. Chi-square over the distinct leaf sets plus one cell
    # for the subsampled nodes, as a z-score (normal approximation, |z| < 4).
    multiplicity = {leaves: nodes.count(leaves) for leaves in set(nodes)}
    observed = [counts[leaves] for leaves in multiplicity if len(leaves) <= MAX_WAYS]
    expected = [m for leaves, m in multiplicity.items() if len(leaves) <= MAX_WAYS]
    observed.append(subsampled)
    expected.append(sum(m for leaves, m in multiplicity.items() if len(leaves) > MAX_WAYS))
    expected = np.array(expected) * EPISODES / len(nodes)
    chi2 = float((((np.array(observed) - expected) ** 2) / expected).sum())
    dof = len(expected) - 1
    assert abs(chi2 - dof) / np.sqrt(2 * dof) < 4, f"chi2 {chi2:.1f} on {dof} dof"
    assert subsampled > 0


def test_omniglot_episodes_stay_within_one_alphabet(drawn):
    raw = omniglot_like_spec()
    ours = drawn("omniglot")
    alphabets = ReferenceEpisodes(raw).alphabets
    alphabet_of = {c: a for a, members in enumerate(alphabets) for c in members}
    hits = np.zeros(len(alphabets))
    for episode in ours:
        (alphabet,) = {alphabet_of[c] for c in episode.classes.tolist()}
        hits[alphabet] += 1
        assert len(episode.classes) <= len(alphabets[alphabet])
    expected = EPISODES / len(alphabets)
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    dof = len(alphabets) - 1
    assert abs(chi2 - dof) / np.sqrt(2 * dof) < 4, f"alphabets not uniform: chi2 {chi2:.1f}"


# ---------------------------------------------------------------- spec parsing, checks


def test_dag_groups_are_the_leaves_each_internal_node_spans(tmp_path):
    raw = {
        "__class__": "HierarchicalDatasetSpecification",
        "name": "tiny",
        "split_subgraphs": {
            "TRAIN": [
                node("r", ["a", "b"]),
                node("a", ["l1", "l2"]),
                node("b", ["l2", "l3"]),  # l2 has two parents
                node("l1"),
                node("l2"),
                node("l3"),
            ],
            "VALID": [node("c", ["v1"]), node("v1")],
            "TEST": [node("t1")],
        },
        "images_per_class": {
            "TRAIN": {"l1": 4, "l2": 5, "l3": 6},
            "VALID": {"v1": 7},
            "TEST": {"t1": 8},
        },
        "class_names": {"0": "l1", "1": "l2", "2": "l3", "3": "v1", "4": "t1"},
        "file_pattern": "{}.tfrecords",
    }
    (tmp_path / "dataset_spec.json").write_text(json.dumps(raw))
    spec = read_dataset_spec(tmp_path / "dataset_spec.json")
    assert spec.hierarchies["TRAIN"] == ClassHierarchy("dag", ((0, 1), (1, 2), (0, 1, 2)))
    assert spec.hierarchies["VALID"] == ClassHierarchy("dag", ((3,),))
    assert "TEST" not in spec.hierarchies
    valid = MetaDatasetRecords(tmp_path, split="validation")
    assert valid.hierarchy == ClassHierarchy("dag", ((0,),)), "in the split's own class ids"
    assert MetaDatasetRecords(tmp_path, split="test").hierarchy is None

    raw["split_subgraphs"]["TRAIN"][3] = node("l1", ["r"])
    (tmp_path / "dataset_spec.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="cycle"):
        read_dataset_spec(tmp_path / "dataset_spec.json")


def test_bilevel_groups_are_each_splits_superclasses(tmp_path):
    raw = omniglot_like_spec()
    (tmp_path / "dataset_spec.json").write_text(json.dumps(raw))
    spec = read_dataset_spec(tmp_path / "dataset_spec.json")
    sizes = [raw["classes_per_superclass"][str(s)] for s in range(40)]
    train = spec.hierarchies["TRAIN"]
    assert train.kind == "bilevel" and [len(g) for g in train.groups] == sizes[:30]
    assert train.groups[1] == tuple(range(14, 14 + 55))
    valid = MetaDatasetRecords(tmp_path, split="valid").hierarchy
    assert valid is not None and valid.groups[0] == tuple(range(20))
    assert [len(g) for g in valid.groups] == sizes[30:35]


def test_hierarchy_checks_say_what_to_change():
    pools = class_pools(SyntheticCollection([20] * 12))
    too_small = ClassHierarchy("bilevel", ((0, 1, 2), tuple(range(3, 12))))
    with pytest.raises(ValueError, match=r"superclasses 0 \(3\) have fewer than min_way=5"):
        VariableWaySampler(hierarchy=too_small).check(pools)
    VariableWaySampler(min_way=3, hierarchy=too_small).check(pools)
    no_node = ClassHierarchy("dag", ((0, 1), tuple(range(12))))
    with pytest.raises(ValueError, match=r"no node .* spans 5 to 10 leaves"):
        VariableWaySampler(max_node_leaves=10, hierarchy=no_node).check(pools)
    with pytest.raises(ValueError, match=r"names classes \[12\]"):
        VariableWaySampler(hierarchy=ClassHierarchy("dag", (tuple(range(13)),))).check(pools)
    with pytest.raises(ValueError, match="in order"):
        VariableWaySampler(hierarchy=no_node).check(pools[1:])
    with pytest.raises(ValueError, match="'dag' or 'bilevel'"):
        ClassHierarchy("tree", ((0,),))  # type: ignore[arg-type]


def test_meta_dataset_config_samples_with_the_hierarchy(tmp_path):
    (tmp_path / "dataset_spec.json").write_text(json.dumps(omniglot_like_spec()))
    variable = SamplerConfig(kind="variable")
    data = DataConfig(dataset="meta-dataset", root=str(tmp_path), sampler=variable)
    tasks = task_dataset(data, "train", num_tasks=3, image_size=8, seed=0)
    assert tasks.sampler.hierarchy == MetaDatasetRecords(tmp_path).hierarchy
    flat = SamplerConfig(kind="variable", hierarchy=False)
    data = DataConfig(dataset="meta-dataset", root=str(tmp_path), sampler=flat)
    assert task_dataset(data, "train", 3, 8, 0).sampler.hierarchy is None
