"""Turning episode specs into ``Task`` records, and a reproducible torch dataset of tasks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from litemeta.data.base import ClassPool, ImageCollection, class_pools
from litemeta.data.samplers import EpisodeSampler, EpisodeSpec
from litemeta.tasks import Task


def task_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for task ``index``: depends only on ``(seed, index)``, so the same
    tasks come out whatever the order, process or DataLoader worker that draws them."""
    return np.random.default_rng([seed, index])


def load_task(
    collection: ImageCollection, spec: EpisodeSpec, pools: Sequence[ClassPool] | None = None
) -> Task:
    """Load the images of an episode spec as uint8, at the collection's decode size (at
    their stored size, which must then be the same for all of them, when it has none).

    With the collection's ``on_error='skip'``, an unreadable image is replaced by an image
    of the same class that the task does not use, from the same side's pool in ``pools``
    (the pools the spec was drawn from; without them, any of the class's items): never by
    one of the task's own images, which would put the same image in support and query.
    """
    by_class = {pool.class_id: pool for pool in pools or ()}
    used: dict[int, set[int]] = {}
    for label, item in (*spec.support, *spec.query):
        used.setdefault(spec.classes[label], set()).add(item)
    for class_id, item in spec.unknown:
        used.setdefault(class_id, set()).add(item)

    def alternatives(class_id: int, item: int, side: str) -> Iterator[int]:
        pool = by_class.get(class_id)
        if pool is None:
            candidates = np.arange(collection.num_items(class_id))
        else:
            candidates = pool.query if side == "query" and not pool.shared else pool.support
        after = candidates > item  # the next items first, then the earlier ones
        for other in (*candidates[after].tolist(), *candidates[~after].tolist()):
            if other not in used[class_id]:
                yield other

    def load(
        pairs: Sequence[tuple[int, int]], side: str, by_id: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The images of ``(label, item)`` pairs (``by_id``: ``(class_id, item)``)."""
        ids = [(key if by_id else spec.classes[key], item) for key, item in pairs]
        images = [
            collection.load_image(class_id, item, alternatives(class_id, item, side))
            for class_id, item in ids
        ]
        sizes = {tuple(image.shape) for image in images}
        if len(sizes) > 1:
            raise ValueError(
                f"images of {collection.name} have different stored sizes {sorted(sizes)[:3]}: "
                "give the collection a decode_size to resize them to"
            )
        labels = torch.tensor([label for label, _ in pairs], dtype=torch.int64)
        return (torch.stack(images) if images else torch.zeros(0, dtype=torch.uint8)), labels

    support_images, support_labels = load(spec.support, "support")
    query_images, query_labels = load(spec.query, "query")
    if not query_images.numel():
        query_images = support_images.new_zeros(0, *support_images.shape[1:])
    unknown_images = load(spec.unknown, "query", by_id=True)[0] if spec.unknown else None
    groups = None
    if spec.query_groups is not None:
        groups = torch.tensor(spec.query_groups, dtype=torch.int64)
    clips = [
        None if rows is None else torch.tensor(rows, dtype=torch.int64)
        for rows in (spec.support_clips, spec.query_clips)
    ]
    return Task(
        support_images=support_images,
        support_labels=support_labels,
        query_images=query_images,
        query_labels=query_labels,
        class_names=[collection.class_names[c] for c in spec.classes],
        query_groups=groups,
        support_clips=clips[0],
        query_clips=clips[1],
        unknown_images=unknown_images,
    )


class EpisodicTaskDataset(Dataset):
    """``num_tasks`` tasks drawn by ``sampler`` from ``collection``; item ``i`` is a ``Task``.

    Task ``i`` is drawn from a generator seeded by ``(seed, i)``, so a seed fixes the
    tasks across runs and across DataLoader worker counts. Use it with
    ``DataLoader(dataset, batch_size=None, num_workers=k)``. Images come at the
    collection's decode size (``ImageCollection.decode_size``). The sampler's
    requirements are checked here, before any training starts.
    """

    def __init__(
        self,
        collection: ImageCollection,
        sampler: EpisodeSampler,
        num_tasks: int,
        *,
        seed: int = 0,
        support_styles: Sequence[str] | None = None,
        query_styles: Sequence[str] | None = None,
        pools: Sequence[ClassPool] | None = None,
    ) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
        self.collection = collection
        self.sampler = sampler
        self.num_tasks = num_tasks
        self.seed = seed
        if pools is None:
            pools = class_pools(collection, support_styles, query_styles)
        self.pools = list(pools)
        sampler.check(self.pools)

    def __len__(self) -> int:
        return self.num_tasks

    def spec(self, index: int) -> EpisodeSpec:
        """The episode spec of task ``index`` (no images loaded)."""
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task index {index} out of range 0..{self.num_tasks - 1}")
        return self.draw(task_rng(self.seed, index))

    def draw(self, rng: np.random.Generator) -> EpisodeSpec:
        """An episode spec drawn with ``rng`` from this dataset's pools and sampler."""
        return self.sampler.sample(self.pools, rng)

    def load(self, spec: EpisodeSpec) -> Task:
        """The task of an episode spec drawn from this dataset (its images loaded)."""
        return load_task(self.collection, spec, self.pools)

    def __getitem__(self, index: int) -> Task:
        return self.load(self.spec(index))

    def with_sampler(self, sampler: EpisodeSampler) -> EpisodicTaskDataset:
        """The same collection, pools, task count and seed, drawn by ``sampler``."""
        return EpisodicTaskDataset(
            self.collection, sampler, self.num_tasks, seed=self.seed, pools=self.pools
        )
