"""Datasets and episode samplers: class folders, the built-in emoji set, ORBIT and
Meta-Dataset records (one source, or several: ``MixedSourceTasks``, ``PerSourceTasks``).
No model code lives here.

Readers are ``ImageCollection``s, whose images come at their stored size or at a decode
size chosen when the collection is built (``decode_size``); samplers turn per-class pools
into ``EpisodeSpec``s; ``EpisodicTaskDataset`` / ``OrbitTaskDataset`` load them as
``litemeta.tasks.Task``s. The emoji set's builder is ``litemeta.data.emoji_build``.

An experiment's ``data:`` settings (``litemeta.data.settings.DataConfig``) name a dataset
kind (``litemeta.data.registry``, one module each in ``litemeta.data.kinds``), which builds
the reader and tasks of each split.
"""

from litemeta.data.base import ClassPool, ImageCollection, class_pools
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.emoji import STYLES as EMOJI_STYLES
from litemeta.data.emoji import emoji_tasks, load_emoji
from litemeta.data.episodic import EpisodicTaskDataset, load_task, task_rng
from litemeta.data.images import ImageLoadError
from litemeta.data.metadataset import MetaDatasetRecords, read_dataset_spec
from litemeta.data.multisource import MixedSourceTasks, PerSourceTasks
from litemeta.data.orbit import OrbitDataset
from litemeta.data.orbit_sampler import OrbitTaskSampler
from litemeta.data.orbit_tasks import InterleavedOrbitTasks, OrbitTaskDataset
from litemeta.data.samplers import (
    ClassHierarchy,
    EpisodeSpec,
    FixedWaySampler,
    OpenSetSampler,
    VariableWaySampler,
)

__all__ = [
    "EMOJI_STYLES",
    "ClassFolderDataset",
    "ClassHierarchy",
    "ClassPool",
    "EpisodeSpec",
    "EpisodicTaskDataset",
    "FixedWaySampler",
    "ImageCollection",
    "ImageLoadError",
    "InterleavedOrbitTasks",
    "MetaDatasetRecords",
    "MixedSourceTasks",
    "OpenSetSampler",
    "OrbitDataset",
    "OrbitTaskDataset",
    "OrbitTaskSampler",
    "PerSourceTasks",
    "VariableWaySampler",
    "class_pools",
    "emoji_tasks",
    "load_emoji",
    "load_task",
    "read_dataset_spec",
    "task_rng",
]
