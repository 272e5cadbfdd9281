"""Episode samplers: which items of which classes form a task's support and query sets.

Samplers return an ``EpisodeSpec`` (indices only); loading images is separate, so the
sampling rules are testable without any image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from litemeta.data.base import ClassPool


@dataclass(frozen=True)
class EpisodeSpec:
    """One task as indices. ``classes[label]`` is the collection's class id of a label.

    ``support`` and ``query`` hold ``(label, item)`` pairs, ``item`` indexing the class's
    items. ``query_groups`` optionally gives each query item a group id (an ORBIT video).
    ``support_clips`` and ``query_clips`` optionally group a side's items into clips of
    positions in ``support`` / ``query`` (see :class:`~litemeta.tasks.Task`). ``unknown``
    holds ``(class_id, item)`` query items of classes outside ``classes`` (open-set
    meta-training, :class:`OpenSetSampler`).
    """

    classes: tuple[int, ...]
    support: tuple[tuple[int, int], ...]
    query: tuple[tuple[int, int], ...]
    query_groups: tuple[int, ...] | None = None
    support_clips: tuple[tuple[int, ...], ...] | None = None
    query_clips: tuple[tuple[int, ...], ...] | None = None
    unknown: tuple[tuple[int, int], ...] = ()

    @property
    def way(self) -> int:
        return len(self.classes)

    def support_counts(self) -> np.ndarray:
        return np.bincount([label for label, _ in self.support], minlength=self.way)

    def query_counts(self) -> np.ndarray:
        return np.bincount([label for label, _ in self.query], minlength=self.way)


class EpisodeSampler(Protocol):
    def check(self, pools: Sequence[ClassPool]) -> None:
        """Raise ``ValueError`` saying what to change if ``pools`` cannot give episodes."""

    def sample(self, pools: Sequence[ClassPool], rng: np.random.Generator) -> EpisodeSpec:
        """Draw one episode."""


def _too_small_message(small: list[tuple[str, int]], need: str, fix: str) -> str:
    listed = ", ".join(f"{name!r} ({count})" for name, count in small[:10])
    more = f" and {len(small) - 10} more" if len(small) > 10 else ""
    return f"{len(small)} classes have fewer images than {need}: {listed}{more}. {fix}"


def _draw(pool: ClassPool, num_support: int, num_query: int, rng: np.random.Generator):
    """Draw disjoint support and query items from a class pool (style pools are disjoint)."""
    if pool.shared:
        chosen = rng.choice(pool.support, size=num_support + num_query, replace=False)
        return chosen[:num_support], chosen[num_support:]
    support = rng.choice(pool.support, size=num_support, replace=False)
    query = rng.choice(pool.query, size=num_query, replace=False)  # type: ignore[arg-type]
    return support, query


def _assemble(chosen: list[tuple[int, np.ndarray, np.ndarray]]) -> EpisodeSpec:
    classes = tuple(class_id for class_id, _, _ in chosen)
    support = tuple((label, int(i)) for label, (_, s, _) in enumerate(chosen) for i in s)
    query = tuple((label, int(i)) for label, (_, _, q) in enumerate(chosen) for i in q)
    return EpisodeSpec(classes, support, query)


@dataclass(frozen=True)
class FixedWaySampler:
    """Classic N-way K-shot episodes with Q queries per class (Vinyals et al., 2016); a
    task is scored on its queries, so there is at least one per class."""

    way: int
    shot: int
    query: int

    def __post_init__(self) -> None:
        if self.way < 1 or self.shot < 1 or self.query < 1:
            raise ValueError(
                f"need way >= 1, shot >= 1, query >= 1; got {self.way}, {self.shot}, {self.query}"
            )

    def check(self, pools: Sequence[ClassPool]) -> None:
        if len(pools) < self.way:
            raise ValueError(
                f"{self.way}-way tasks need at least {self.way} classes but only {len(pools)} "
                "are available; lower the way or use a split with more classes"
            )
        small = []
        for pool in pools:
            if pool.shared:
                if len(pool.support) < self.shot + self.query:
                    small.append((pool.name, len(pool.support)))
            elif len(pool.support) < self.shot or len(pool.query) < self.query:  # type: ignore[arg-type]
                small.append((pool.name, min(len(pool.support), len(pool.query))))  # type: ignore[arg-type]
        if small:
            need = (
                f"shot + query = {self.shot} + {self.query}"
                if pools[0].shared
                else f"shot = {self.shot} (support styles) or query = {self.query} (query styles)"
            )
            raise ValueError(
                _too_small_message(
                    small, need, "Lower shot/query, or remove these classes from the split."
                )
            )

    def sample(self, pools: Sequence[ClassPool], rng: np.random.Generator) -> EpisodeSpec:
        picked = rng.choice(len(pools), size=self.way, replace=False)
        chosen = []
        for index in picked:
            support, query = _draw(pools[index], self.shot, self.query, rng)
            chosen.append((pools[index].class_id, support, query))
        return _assemble(chosen)


@dataclass(frozen=True)
class ClassHierarchy:
    """Groups of related classes that Meta-Dataset draws an episode's classes from
    (Triantafillou et al., ICLR 2020).

    ``kind="dag"``: each group holds the leaf classes spanned by one internal node of a
    class DAG (ImageNet's WordNet graph), one group per node even where two nodes span the
    same leaves. ``kind="bilevel"``: each group is one superclass's classes (Omniglot's
    alphabets). Ids are the collection's class ids; the sampler's pools must hold the
    collection's classes in order, as ``class_pools`` builds them.
    """

    kind: Literal["dag", "bilevel"]
    groups: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if self.kind not in ("dag", "bilevel"):
            raise ValueError(f"hierarchy kind must be 'dag' or 'bilevel', got {self.kind!r}")
        if not self.groups:
            raise ValueError("a class hierarchy needs at least one group of classes")


@dataclass(frozen=True)
class VariableWaySampler:
    """Meta-Dataset's variable-way, variable-shot episodes (Triantafillou et al., ICLR 2020).

    Classes: without a ``hierarchy``, way is uniform in ``[min_way, min(max_way,
    classes)]`` and the classes uniform. With a ``"dag"`` hierarchy, one internal node is
    drawn uniformly among those spanning ``min_way..max_node_leaves`` leaves and its leaves
    are the episode's classes (a random ``max_way`` of them when it spans more). With a
    ``"bilevel"`` one, a superclass is drawn uniformly, then way uniform in ``[min_way,
    min(max_way, its classes)]`` and the classes uniformly within it.

    Shots: queries per class are ``q = min(max_query_per_class, floor(min_c n_c / 2))``, so
    never more than half of a class. The support size is ``min(max_support, sum_c
    ceil(beta * min(max_support_contrib_per_class, n_c - q)))`` with ``beta ~ U(0, 1]``,
    split between classes in proportion to ``n_c * exp(U[min_log_weight,
    max_log_weight])``: class ``c`` gets ``floor(p_c * (size - way)) + 1`` shots, capped
    only by its ``n_c - q`` remaining images. With style-separated pools, queries come from
    the query styles and ``n_c`` counts the support styles' images.
    """

    min_way: int = 5
    max_way: int = 50
    max_support: int = 500
    max_support_contrib_per_class: int = 100
    max_query_per_class: int = 10
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2.0)
    hierarchy: ClassHierarchy | None = field(default=None, repr=False)
    max_node_leaves: int = 392

    def __post_init__(self) -> None:
        if not 1 <= self.min_way <= self.max_way:
            raise ValueError(f"need 1 <= min_way <= max_way, got {self.min_way}, {self.max_way}")
        if self.max_support < self.max_way:
            raise ValueError(
                f"max_support ({self.max_support}) must allow one image per class of "
                f"max_way ({self.max_way})"
            )
        if self.max_support_contrib_per_class < 1 or self.max_query_per_class < 1:
            raise ValueError(
                "max_support_contrib_per_class and max_query_per_class must be at least 1, got "
                f"{self.max_support_contrib_per_class} and {self.max_query_per_class}"
            )
        if self.min_log_weight > self.max_log_weight:
            raise ValueError(
                f"need min_log_weight <= max_log_weight, got {self.min_log_weight}, "
                f"{self.max_log_weight}"
            )

    def _eligible_nodes(self, hierarchy: ClassHierarchy) -> list[tuple[int, ...]]:
        """The DAG nodes an episode may come from: those spanning ``min_way`` to
        ``max_node_leaves`` leaves (Meta-Dataset's ``MAX_SPANNING_LEAVES_ELIGIBLE``)."""
        return [g for g in hierarchy.groups if self.min_way <= len(g) <= self.max_node_leaves]

    def check(self, pools: Sequence[ClassPool]) -> None:
        if len(pools) < self.min_way:
            raise ValueError(
                f"variable-way episodes need at least min_way={self.min_way} classes but only "
                f"{len(pools)} are available; lower min_way or use a split with more classes"
            )
        if pools and pools[0].shared:
            small = [(p.name, len(p.support)) for p in pools if len(p.support) < 2]
            if small:
                raise ValueError(
                    _too_small_message(
                        small,
                        "2 (one support and one query image)",
                        "A class with a single image cannot be split into support and "
                        "query; remove these classes or give them more images.",
                    )
                )
        else:
            small = [
                (p.name, min(len(p.support), len(p.query)))  # type: ignore[arg-type]
                for p in pools
                if len(p.support) < 1 or len(p.query) < 1  # type: ignore[arg-type]
            ]
            if small:
                raise ValueError(
                    _too_small_message(
                        small,
                        "1 in the support styles and 1 in the query styles",
                        "Choose other support/query styles or remove these classes.",
                    )
                )
        if self.hierarchy is not None:
            self._check_hierarchy(self.hierarchy, pools)

    def _check_hierarchy(self, hierarchy: ClassHierarchy, pools: Sequence[ClassPool]) -> None:
        if any(pool.class_id != index for index, pool in enumerate(pools)):
            raise ValueError(
                "a class hierarchy needs the pools of all the collection's classes in order "
                "(as class_pools builds them); drop the hierarchy to sample from a subset"
            )
        outside = sorted({c for g in hierarchy.groups for c in g if not 0 <= c < len(pools)})
        if outside:
            raise ValueError(
                f"the class hierarchy names classes {outside[:10]} but the collection has "
                f"{len(pools)}; build the hierarchy from the same split as the pools"
            )
        if hierarchy.kind == "dag" and not self._eligible_nodes(hierarchy):
            raise ValueError(
                f"no node of the class hierarchy spans {self.min_way} to "
                f"{self.max_node_leaves} leaves; lower min_way, raise max_node_leaves or "
                "drop the hierarchy"
            )
        if hierarchy.kind == "bilevel":
            small = [
                f"{index} ({len(group)})"
                for index, group in enumerate(hierarchy.groups)
                if len(group) < self.min_way
            ]
            if small:
                raise ValueError(
                    f"superclasses {', '.join(small[:10])} have fewer than min_way="
                    f"{self.min_way} classes; each episode draws its classes from one "
                    "superclass, so lower min_way or drop the hierarchy"
                )

    def _pick_classes(self, num_classes: int, rng: np.random.Generator) -> np.ndarray:
        if self.hierarchy is None:
            way = int(rng.integers(self.min_way, min(self.max_way, num_classes) + 1))
            return rng.choice(num_classes, size=way, replace=False)
        if self.hierarchy.kind == "dag":
            nodes = self._eligible_nodes(self.hierarchy)
            leaves = np.asarray(nodes[int(rng.integers(len(nodes)))])
            if len(leaves) > self.max_way:
                leaves = rng.choice(leaves, size=self.max_way, replace=False)
            return leaves
        groups = self.hierarchy.groups
        members = np.asarray(groups[int(rng.integers(len(groups)))])
        way = int(rng.integers(self.min_way, min(self.max_way, len(members)) + 1))
        return rng.choice(members, size=way, replace=False)

    def sample(self, pools: Sequence[ClassPool], rng: np.random.Generator) -> EpisodeSpec:
        picked = [pools[i] for i in self._pick_classes(len(pools), rng)]
        way = len(picked)
        if picked[0].shared:
            sizes = np.array([len(p.support) for p in picked])
            num_query = min(self.max_query_per_class, int(sizes.min()) // 2)
            remaining = sizes - num_query
        else:
            sizes = remaining = np.array([len(p.support) for p in picked])
            query_sizes = np.array([len(p.query) for p in picked])  # type: ignore[arg-type]
            num_query = min(self.max_query_per_class, int(query_sizes.min()))
        contributions = np.minimum(remaining, self.max_support_contrib_per_class)
        beta = 1.0 - rng.random()  # in (0, 1]
        budget = min(self.max_support, int(np.ceil(beta * contributions).sum()))
        log_weights = rng.uniform(self.min_log_weight, self.max_log_weight, size=way)
        proportions = np.exp(log_weights) * sizes
        proportions = proportions / proportions.sum()
        shots = np.floor(proportions * (budget - way)).astype(int) + 1
        shots = np.minimum(shots, remaining)
        chosen = []
        for pool, shot in zip(picked, shots, strict=True):
            support, query = _draw(pool, int(shot), num_query, rng)
            chosen.append((pool.class_id, support, query))
        return _assemble(chosen)


@dataclass(frozen=True)
class OpenSetSampler:
    """Episodes of ``base`` with query items of ``unknown_classes`` more classes, ``base.query``
    each, that the support set does not have: the "unknown" queries of open-set
    meta-training (PEELER, Liu et al., "Few-Shot Open-Set Recognition using Meta-Learning",
    CVPR 2020). The known part is drawn first, with the same draws as ``base`` alone, so a
    seed gives the same known episodes with and without the unknown classes."""

    base: FixedWaySampler
    unknown_classes: int

    def __post_init__(self) -> None:
        if not isinstance(self.base, FixedWaySampler):
            raise ValueError(
                "unknown classes are drawn beside fixed-way episodes only; use data.sampler.kind "
                f"fixed, got {type(self.base).__name__}"
            )
        if self.unknown_classes < 1:
            raise ValueError(f"unknown_classes must be at least 1, got {self.unknown_classes}")

    def check(self, pools: Sequence[ClassPool]) -> None:
        need = self.base.way + self.unknown_classes
        if len(pools) < need:
            raise ValueError(
                f"{self.base.way}-way tasks with {self.unknown_classes} unknown classes need at "
                f"least {need} classes but only {len(pools)} are available; lower the way or the "
                "unknown classes"
            )
        self.base.check(pools)

    def sample(self, pools: Sequence[ClassPool], rng: np.random.Generator) -> EpisodeSpec:
        spec = self.base.sample(pools, rng)
        taken = set(spec.classes)
        others = [index for index, pool in enumerate(pools) if pool.class_id not in taken]
        picked = rng.choice(others, size=self.unknown_classes, replace=False)
        unknown = []
        for index in picked:
            _, query = _draw(pools[index], 0, self.base.query, rng)
            unknown.extend((pools[index].class_id, int(item)) for item in query)
        return replace(spec, unknown=tuple(unknown))
