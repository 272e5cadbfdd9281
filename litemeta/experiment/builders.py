"""One YAML file describes a whole experiment: the model, the data, training, evaluation.

This module turns that description (:mod:`litemeta.experiment.settings`) into a learner and
task sources, for the command line and for library users who prefer one settings file to
wiring the layers by hand.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from litemeta.config import ConfigError
from litemeta.data import (
    ClassFolderDataset,
    EpisodicTaskDataset,
    FixedWaySampler,
    InterleavedOrbitTasks,
    MetaDatasetRecords,
    MixedSourceTasks,
    OrbitDataset,
    OrbitTaskDataset,
    PerSourceTasks,
    VariableWaySampler,
    load_emoji,
)
from litemeta.data.metadataset import check_not_bare_records
from litemeta.data.samplers import EpisodeSampler
from litemeta.data.vtab import vtab_task
from litemeta.experiment.settings import DataConfig, ModelConfig, SamplerConfig
from litemeta.learners import build_learner
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.tasks import Task

__all__ = [
    "build_model",
    "decode_size",
    "max_support_size",
    "source_folders",
    "task_dataset",
]


def build_model(model: ModelConfig) -> BackboneLearner:
    """The learner that ``model`` describes, with its pretrained weights if asked."""
    options = {**model.learner_options.get(model.learner, {}), **model.options}
    return build_learner(
        model.learner,
        model.backbone,
        model.image_size,
        pretrained=model.pretrained,
        weights_file=model.weights_file,
        film_placement=model.film_placement,
        chunk_size=model.chunk_size,
        **options,
    )


def max_support_size(data: DataConfig) -> int | None:
    """The most support images a task of ``data`` can have, where the sampler bounds it."""
    if data.dataset in ("orbit", "vtab"):
        return None
    if data.sampler.kind == "variable":
        return VariableWaySampler().max_support
    return data.sampler.way * data.sampler.shot


def _episode_sampler(config: SamplerConfig, collection: Any, training: bool) -> EpisodeSampler:
    """The sampler of ``config``; a Meta-Dataset source's class hierarchy is used where
    ``hierarchy`` is on, except a DAG (ImageNet's) in training unless ``train_dag``."""
    if config.kind == "variable":
        use = config.hierarchy and isinstance(collection, MetaDatasetRecords)
        hierarchy = collection.hierarchy if use else None
        if hierarchy is not None and hierarchy.kind == "dag" and training:
            hierarchy = hierarchy if config.train_dag else None
        return VariableWaySampler(hierarchy=hierarchy)
    return FixedWaySampler(config.way, config.shot, config.query)


def _collection(data: DataConfig, split: str, size: int | None) -> Any:
    """The reader of ``split``, decoding images at ``size`` (``None``: stored size)."""
    if data.dataset == "emoji":
        collection = load_emoji(split, data.root, on_error=data.on_error, decode_size=size)
    elif data.root is None:
        raise ConfigError(f"data.root is required for the '{data.dataset}' dataset")
    elif data.dataset == "folders":
        check_not_bare_records(Path(data.root))
        collection = ClassFolderDataset(
            data.root, split=split, on_error=data.on_error, decode_size=size
        )
    elif data.dataset == "meta-dataset":
        collection = MetaDatasetRecords(
            data.root,
            split=split,
            on_error=data.on_error,
            verify_crc=data.verify_crc,
            decode_size=size,
        )
    else:
        collection = OrbitDataset(data.root, split, on_error=data.on_error, decode_size=size)
    if data.cache_decoded is True or (data.cache_decoded == "auto" and data.dataset == "emoji"):
        collection.cache_decoded()
    return collection


def decode_size(data: DataConfig, image_size: int) -> int | None:
    """The size tasks' images are decoded to: the built-in emoji set's images share one
    stored size and are resized on the model's device (``None``); others on the CPU."""
    return None if data.dataset == "emoji" else image_size


def task_dataset(
    data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
) -> Dataset[Task] | list[Task]:
    """``num_tasks`` reproducible tasks of ``split``; item ``i`` depends only on ``(seed, i)``.

    For ORBIT, items cycle over the users so that consecutive tasks come from different
    users.
    """
    if data.dataset == "vtab":
        if data.root is None:
            raise ConfigError("data.root is required for the 'vtab' dataset")
        if split != data.test_split:
            raise ConfigError(
                f"vtab has no {split!r} split: it has one test task per dataset (support from "
                "train800/ + val200/ or train/, queries from test/), so evaluate its "
                f"{data.test_split!r} split "
                f"(`litemeta evaluate` without --split, or --split {data.test_split}); to "
                "meta-train, use another dataset"
            )
        task = vtab_task(
            data.root,
            support=data.vtab.support,
            support_size=data.vtab.support_size,
            query_limit=data.vtab.query_limit,
            decode_size=decode_size(data, image_size),
            seed=seed,
            on_error=data.on_error,
        )
        return [task]
    if data.multi_source:
        return _multi_source_tasks(data, split, num_tasks, image_size, seed)
    collection = _collection(data, split, decode_size(data, image_size))
    if isinstance(collection, OrbitDataset):
        mode = "train" if split == data.train_split else "test"
        sampler = dataclasses.replace(data.orbit, mode=mode)
        index = collection.index
        users = sum(1 for user in range(len(index.users)) if sampler.objects(index, user))
        per_user = math.ceil(num_tasks / max(users, 1))
        by_user = OrbitTaskDataset(collection, sampler, tasks_per_user=per_user, seed=seed)
        return InterleavedOrbitTasks(by_user, num_tasks)
    return _episodes(data, collection, split, num_tasks, seed)


def _episodes(
    data: DataConfig, collection: Any, split: str, num_tasks: int, seed: int
) -> EpisodicTaskDataset:
    try:
        return EpisodicTaskDataset(
            collection,
            _episode_sampler(data.sampler, collection, training=split == data.train_split),
            num_tasks=num_tasks,
            seed=seed,
            support_styles=data.support_styles,
            query_styles=data.query_styles,
        )
    except ValueError as error:  # say which split cannot make the tasks
        raise ValueError(f"the {split!r} split of {collection.name}: {error}") from error


def source_folders(data: DataConfig, split: str) -> dict[str, Path]:
    """The record folder of each source of ``split``, by name (its folder's name):
    ``data.sources`` for the training split, ``data.validation_sources`` or
    ``data.test_sources`` (``null``: ``data.sources``) for the others, each under
    ``data.root`` unless it is a path of its own."""
    key = "sources"
    if split != data.train_split:
        key = "validation_sources" if split == data.validation_split else "test_sources"
    names = getattr(data, key)
    if names is None and key != "sources":
        names, key = data.sources, f"{key} (null, so data.sources)"
    if names is None:
        raise ConfigError(
            f"data.{key} is not set, so the {split!r} split has no sources: list its "
            "source folders there"
        )
    root = Path(data.root) if data.root is not None else None
    folders = {}
    for name in names:
        folder = Path(os.path.expanduser(name))
        if root is not None and not folder.is_absolute():
            folder = root / folder
        folders[folder.name] = folder
    return folders


def _multi_source_tasks(
    data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
) -> MixedSourceTasks | PerSourceTasks:
    """Tasks of several record folders: the training split's drawn from a source chosen
    uniformly per task (``num_tasks`` in all), any other split's ``num_tasks`` per source."""
    size = decode_size(data, image_size)
    by_source = {}
    for name, folder in source_folders(data, split).items():
        one_source = dataclasses.replace(
            data, root=str(folder), sources=None, validation_sources=None, test_sources=None
        )
        collection = _collection(one_source, split, size)
        by_source[name] = _episodes(data, collection, split, num_tasks, seed)
    if split == data.train_split:
        return MixedSourceTasks(by_source, num_tasks, seed=seed)
    return PerSourceTasks(by_source)
