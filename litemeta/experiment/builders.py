"""One YAML file describes a whole experiment: the model, the data, training, evaluation.

This module turns that description (:mod:`litemeta.experiment.settings`) into a learner and
task sources, for the command line and for library users who prefer one settings file to
wiring the layers by hand. Tasks come from the kind of dataset that ``data.dataset`` names
(:mod:`litemeta.data.registry`).
"""

from __future__ import annotations

from torch.utils.data import Dataset

from litemeta.config import ConfigError
from litemeta.data.episodic import EpisodicTaskDataset
from litemeta.data.samplers import FixedWaySampler, OpenSetSampler
from litemeta.data.settings import DataConfig
from litemeta.experiment.settings import ModelConfig
from litemeta.learners import build_learner
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.tasks import Task

__all__ = [
    "build_model",
    "decode_size",
    "max_support_size",
    "task_dataset",
    "with_unknown_classes",
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
    return data.kind.max_support_size(data)


def decode_size(data: DataConfig, image_size: int) -> int | None:
    """The size tasks' images are decoded to (``None``: their stored size, resized on the
    model's device; the built-in emoji set's), as the dataset's kind decides."""
    return data.kind.decode_size(data, image_size)


def task_dataset(
    data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
) -> Dataset[Task] | list[Task]:
    """``num_tasks`` reproducible tasks of ``split``; item ``i`` depends only on ``(seed, i)``.

    For ORBIT, items cycle over the users so that consecutive tasks come from different
    users.
    """
    return data.kind.task_dataset(data, split, num_tasks, image_size, seed)


def with_unknown_classes(
    tasks: Dataset[Task] | list[Task], unknown_classes: int
) -> Dataset[Task] | list[Task]:
    """``tasks`` with the queries of ``unknown_classes`` more classes in each
    (``training.open_set``, :class:`~litemeta.data.samplers.OpenSetSampler`); ``tasks``
    itself for 0."""
    if not unknown_classes:
        return tasks
    if not isinstance(tasks, EpisodicTaskDataset) or not isinstance(
        tasks.sampler, FixedWaySampler
    ):
        raise ConfigError(
            "training.open_set.unknown_classes needs fixed-way episodes of one source "
            "(data.sampler.kind: fixed, a dataset without its own task shape): set it to 0 "
            "for this dataset"
        )
    return tasks.with_sampler(OpenSetSampler(tasks.sampler, unknown_classes))
