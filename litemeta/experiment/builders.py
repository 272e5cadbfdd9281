"""One YAML file describes a whole experiment: the model, the data, training, evaluation.

This module turns that description into a learner and task sources, for the command
line and for library users who prefer one settings file to wiring the layers by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from litemeta.config import ConfigError, apply_overrides, config_from_yaml
from litemeta.data import (
    ClassFolderDataset,
    EpisodicTaskDataset,
    FixedWaySampler,
    MetaDatasetRecords,
    OrbitDataset,
    OrbitTaskDataset,
    OrbitTaskSampler,
    VariableWaySampler,
    load_emoji,
)
from litemeta.data.loading import Workers
from litemeta.data.samplers import EpisodeSampler
from litemeta.data.vtab import vtab_task
from litemeta.learners import LEARNERS, build_learner
from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.tasks import Task
from litemeta.training.settings import TrainingConfig

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ModelConfig",
    "SamplerConfig",
    "build_model",
    "load_experiment",
    "max_support_size",
    "shipped_config",
    "task_dataset",
]

Dataset_ = Literal["emoji", "folders", "orbit", "meta-dataset", "vtab"]


@dataclass
class ModelConfig:
    """Which learner on which backbone.

    ``learner_options`` holds constructor options per learner name, used only when that
    learner is chosen (so a config can tune ProtoNets and still run with
    ``model.learner=simple_cnaps``); ``options`` go to whichever learner is chosen and
    override those.
    """

    learner: str = "protonets"
    backbone: str = "efficientnet_lite0"
    image_size: int = 84
    pretrained: bool = True
    weights_file: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    learner_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SamplerConfig:
    """``fixed``: ``way``-way ``shot``-shot with ``query`` queries per class. ``variable``:
    Meta-Dataset's variable-way variable-shot episodes (Triantafillou et al., 2020), with
    classes drawn from one node of the source's class hierarchy (ImageNet's WordNet
    graph, Omniglot's alphabets) where its ``dataset_spec.json`` has one, unless
    ``hierarchy`` is false."""

    kind: Literal["fixed", "variable"] = "fixed"
    way: int = 5
    shot: int = 5
    query: int = 2
    hierarchy: bool = True


@dataclass
class DataConfig:
    """Where tasks come from.

    ``dataset``: ``emoji`` (built in), ``folders`` (``root/<class>/<images>`` with optional
    styles and ``splits.json``), ``orbit`` (ORBIT's on-disk layout) or ``meta-dataset``
    (per-class ``.tfrecords`` with ``dataset_spec.json``) or ``vtab`` (one transfer task:
    ``vtab_support_size`` images of ``root/train/<class>/``, queries from ``root/test/``;
    evaluation only). ``support_styles`` and
    ``query_styles`` take a task's support and query images from different styles.
    ``orbit_target`` picks clean (CLE-VE) or clutter (CLU-VE) target videos; target videos
    with fewer than ``orbit_min_target_frames`` valid frames are skipped. ORBIT's training
    split gets the benchmark's training sampler (way up to ``orbit_max_way``), the others its
    test protocol: every ``orbit_context_clip_stride``-th context clip up to
    ``orbit_max_context_clips`` per video, at most ``orbit_frame_cap`` frames per video, and
    all valid target frames (``orbit_target_frames: all``) or 200 random ones (``sampled``);
    see ``OrbitTaskSampler``. ``on_error: skip``
    replaces an unreadable image by another of its class (with a warning naming it).
    ``verify_crc`` checks each Meta-Dataset record's CRC32C when it is read.

    ``workers``: processes that load tasks ahead of the model (``auto``: none on the CPU,
    several with a GPU; results do not depend on it). ``cache_decoded`` keeps decoded
    images in memory (``auto``: for the built-in emoji set, whose images are also handed to
    the model at their stored size and resized on its device).
    """

    dataset: Dataset_ = "emoji"
    root: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    support_styles: list[str] | None = None
    query_styles: list[str] | None = None
    validation_tasks: int = 50
    orbit_target: Literal["clean", "clutter"] = "clutter"
    orbit_clip_length: int = 1
    orbit_min_target_frames: int = 50
    orbit_target_frames: Literal["all", "sampled"] = "all"
    orbit_context_clip_stride: int = 30
    orbit_max_context_clips: int = 200
    orbit_frame_cap: int = 1000
    orbit_max_way: int = 15
    on_error: Literal["raise", "skip"] = "raise"
    verify_crc: bool = True
    vtab_support_size: int = 1000
    vtab_query_limit: int | None = None
    workers: Workers = "auto"
    cache_decoded: bool | Literal["auto"] = "auto"


@dataclass
class EvaluationConfig:
    """Test tasks per split (600, as for Meta-Dataset; 0: ``train`` skips the test
    evaluation) and the query batch size."""

    tasks: int = 600
    query_batch_size: int = 256
    seed: int = 1

    def __post_init__(self) -> None:
        if self.tasks < 0:
            raise ConfigError(
                f"evaluation.tasks must be >= 0 (0: no test evaluation), got {self.tasks}"
            )
        if self.query_batch_size < 1:
            raise ConfigError(
                f"evaluation.query_batch_size must be at least 1, got {self.query_batch_size}"
            )


@dataclass
class ExperimentConfig:
    """The whole experiment; see ``litemeta/configs/*.yaml`` for complete examples."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shipped_config(name: str) -> Path:
    """Path of a config shipped with the package (``default``, ``orbit``, ...)."""
    path = Path(str(resources.files("litemeta") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no shipped config '{name}': choose one of {shipped} or give a path")
    return path


def load_experiment(config: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML file (or a shipped config's name) and apply ``key=value`` overrides."""
    path = Path(config)
    if not path.suffix and not path.exists():
        path = shipped_config(str(config))
    return apply_overrides(config_from_yaml(ExperimentConfig, path), overrides)


def build_model(model: ModelConfig) -> BackboneLearner:
    """The learner that ``model`` describes, with its pretrained weights if asked."""
    unknown = sorted(set(model.learner_options) - set(LEARNERS))
    if unknown:
        raise ConfigError(
            f"model.learner_options names unknown learners {unknown}; use names from "
            f"{sorted(LEARNERS)}"
        )
    options = {**model.learner_options.get(model.learner, {}), **model.options}
    return build_learner(
        model.learner,
        model.backbone,
        model.image_size,
        pretrained=model.pretrained,
        weights_file=model.weights_file,
        **options,
    )


def max_support_size(data: DataConfig) -> int | None:
    """The most support images a task of ``data`` can have, where the sampler bounds it."""
    if data.dataset in ("orbit", "vtab"):
        return None
    if data.sampler.kind == "variable":
        return VariableWaySampler().max_support
    return data.sampler.way * data.sampler.shot


def _episode_sampler(config: SamplerConfig, collection: Any) -> EpisodeSampler:
    if config.kind == "variable":
        use = config.hierarchy and isinstance(collection, MetaDatasetRecords)
        return VariableWaySampler(hierarchy=collection.hierarchy if use else None)
    return FixedWaySampler(config.way, config.shot, config.query)


def _collection(data: DataConfig, split: str) -> Any:
    if data.dataset == "emoji":
        collection = load_emoji(split, data.root, on_error=data.on_error)
    elif data.root is None:
        raise ConfigError(f"data.root is required for the '{data.dataset}' dataset")
    elif data.dataset == "folders":
        collection = ClassFolderDataset(data.root, split=split, on_error=data.on_error)
    elif data.dataset == "meta-dataset":
        collection = MetaDatasetRecords(
            data.root, split=split, on_error=data.on_error, verify_crc=data.verify_crc
        )
    else:
        collection = OrbitDataset(data.root, split, on_error=data.on_error)
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
                "vtab is a transfer-evaluation dataset (one task per dataset): meta-train on "
                "another dataset and evaluate on vtab with `litemeta evaluate`"
            )
        task = vtab_task(
            data.root,
            image_size=image_size,
            support_size=data.vtab_support_size,
            query_limit=data.vtab_query_limit,
            seed=seed,
            on_error=data.on_error,
        )
        return [task]
    collection = _collection(data, split)
    if isinstance(collection, OrbitDataset):
        sampler = OrbitTaskSampler(
            target=data.orbit_target,
            mode="train" if split == data.train_split else "test",
            clip_length=data.orbit_clip_length,
            frame_cap=data.orbit_frame_cap,
            context_clip_stride=data.orbit_context_clip_stride,
            max_context_clips=data.orbit_max_context_clips,
            target_frames=data.orbit_target_frames,
            max_way=data.orbit_max_way,
            min_target_frames=data.orbit_min_target_frames,
        )
        index = collection.index
        users = sum(1 for user in range(len(index.users)) if sampler.objects(index, user))
        per_user = math.ceil(num_tasks / max(users, 1))
        by_user = OrbitTaskDataset(
            collection, sampler, image_size, tasks_per_user=per_user, seed=seed
        )
        return _Interleaved(by_user, users, per_user, num_tasks)
    return EpisodicTaskDataset(
        collection,
        _episode_sampler(data.sampler, collection),
        num_tasks=num_tasks,
        image_size=decode_size(data, image_size),
        seed=seed,
        support_styles=data.support_styles,
        query_styles=data.query_styles,
    )


class _Interleaved(Dataset):
    """Item ``i`` = user ``i % users``'s task ``i // users`` of a user-major dataset."""

    def __init__(
        self, by_user: OrbitTaskDataset, users: int, per_user: int, num_tasks: int
    ) -> None:
        self.by_user, self.users, self.per_user = by_user, users, per_user
        self.num_tasks = num_tasks

    def __len__(self) -> int:
        return self.num_tasks

    def _by_user_index(self, index: int) -> int:
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task index {index} out of range 0..{self.num_tasks - 1}")
        return (index % self.users) * self.per_user + index // self.users

    def user_of(self, index: int) -> str:
        """The ORBIT user of task ``index``, for per-user metrics."""
        return self.by_user.user_of(self._by_user_index(index))

    def __getitem__(self, index: int) -> Task:
        return self.by_user[self._by_user_index(index)]
