"""The dataset kinds known by name: every :class:`DatasetKind` subclass with a ``name``
registers itself when its module is imported, and every module of :mod:`litemeta.data.kinds`
is imported on first use, so a new kind of dataset is one new file there (as learners are
one file in :mod:`litemeta.learners`).

A kind says how a ``data:`` section (:class:`~litemeta.data.settings.DataConfig`) becomes
tasks: its own settings section (``data.<section>``), its reader, the size its images are
decoded to, whether it can be meta-trained on, and how ``litemeta data info`` recognises
and describes a dataset of its kind on disk.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch.utils.data import Dataset

from litemeta.config import ConfigError
from litemeta.data.base import ImageCollection
from litemeta.data.episodic import EpisodicTaskDataset
from litemeta.data.samplers import EpisodeSampler, FixedWaySampler, VariableWaySampler
from litemeta.tasks import Task

if TYPE_CHECKING:
    from litemeta.data.settings import DataConfig

__all__ = [
    "DATASETS",
    "DatasetKind",
    "dataset_kind",
    "dataset_kinds",
    "discover_datasets",
]

#: The dataset kinds by the name ``data.dataset`` gives, in the order they registered.
DATASETS: dict[str, DatasetKind] = {}

#: Where the kinds' modules live; every module there is imported by :func:`discover_datasets`.
KINDS_PACKAGE = "litemeta.data.kinds"

TaskSource = Dataset[Task] | list[Task]


class DatasetKind:
    """One kind of dataset. Subclasses set ``name`` (and register on definition); the
    defaults make episodic tasks from :meth:`collection` with ``data.sampler``.

    ``settings``: the dataclass of the kind's ``data.<section>`` settings (``None``: none).
    ``trainable``: whether it has a training split to meta-train on. ``episodic``: whether
    ``data.sampler`` shapes its tasks (way, shot, queries). ``decode_at_stored_size``: its
    images share one stored size, are decoded at it and resized on the model's device, and
    are kept decoded in memory under ``data.cache_decoded: auto``. ``multi_source``: whether
    ``data.sources`` (and the validation and test lists) may list several roots.
    ``detect_order``: ``litemeta data info`` asks the kinds in this order (lowest first)
    whether a path is theirs.
    """

    name: ClassVar[str]
    settings: ClassVar[type | None] = None
    trainable: ClassVar[bool] = True
    episodic: ClassVar[bool] = True
    decode_at_stored_size: ClassVar[bool] = False
    multi_source: ClassVar[bool] = False
    detect_order: ClassVar[int] = 50

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in vars(cls):
            _register(cls())

    def __repr__(self) -> str:
        return f"<dataset kind {self.name!r}>"

    @property
    def section(self) -> str:
        """The key of the kind's settings under ``data:`` (``meta-dataset``: ``meta_dataset``)."""
        return self.name.replace("-", "_")

    def decode_size(self, data: DataConfig, image_size: int) -> int | None:
        """The size tasks' images are decoded to (``None``: their stored size)."""
        return None if self.decode_at_stored_size else image_size

    def max_support_size(self, data: DataConfig) -> int | None:
        """The most support images a task can have, where ``data.sampler`` bounds it."""
        if not self.episodic:
            return None
        if data.sampler.kind == "variable":
            return VariableWaySampler().max_support
        return data.sampler.way * data.sampler.shot

    def task_shape(self, data: DataConfig) -> str:
        """How the tasks of the training split are drawn, in words."""
        sampler = data.sampler
        if sampler.kind == "variable":
            return "variable-way variable-shot"
        return f"{sampler.way}-way {sampler.shot}-shot, {sampler.query} queries per class"

    def collection(self, data: DataConfig, split: str, size: int | None) -> ImageCollection:
        """The reader of ``split``, decoding images at ``size`` (``None``: stored size)."""
        raise NotImplementedError(f"the '{self.name}' dataset kind has no reader")

    def checked_root(self, data: DataConfig) -> Path:
        """``data.root``, which this kind requires."""
        if data.root is None:
            raise ConfigError(f"data.root is required for the '{self.name}' dataset")
        return Path(data.root)

    def cached(self, data: DataConfig, collection: ImageCollection) -> ImageCollection:
        """``collection`` with its decoded-image cache on where ``data.cache_decoded`` asks."""
        auto = data.cache_decoded == "auto" and self.decode_at_stored_size
        if data.cache_decoded is True or auto:
            collection.cache_decoded()
        return collection

    def episode_sampler(
        self, data: DataConfig, collection: ImageCollection, training: bool
    ) -> EpisodeSampler:
        """The sampler that ``data.sampler`` describes."""
        config = data.sampler
        if config.kind == "variable":
            return VariableWaySampler()
        return FixedWaySampler(config.way, config.shot, config.query)

    def episodes(
        self, data: DataConfig, collection: ImageCollection, split: str, num_tasks: int, seed: int
    ) -> EpisodicTaskDataset:
        """``num_tasks`` episodes of ``collection`` drawn by :meth:`episode_sampler`."""
        try:
            return EpisodicTaskDataset(
                collection,
                self.episode_sampler(data, collection, training=split == data.train_split),
                num_tasks=num_tasks,
                seed=seed,
                support_styles=data.support_styles,
                query_styles=data.query_styles,
            )
        except ValueError as error:  # say which split cannot make the tasks
            raise ValueError(f"the {split!r} split of {collection.name}: {error}") from error

    def task_dataset(
        self, data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
    ) -> TaskSource:
        """``num_tasks`` reproducible tasks of ``split``; item ``i`` depends on ``(seed, i)``."""
        collection = self.collection(data, split, self.decode_size(data, image_size))
        return self.episodes(data, self.cached(data, collection), split, num_tasks, seed)

    def detect(self, target: str) -> bool:
        """Whether ``target`` (what ``litemeta data info`` was given) is a dataset of this kind."""
        return False

    def describe(self, target: str, verify: bool = False) -> str:
        """A text summary of the dataset at ``target``; ``verify`` decodes every image."""
        raise NotImplementedError(f"the '{self.name}' dataset kind cannot describe a dataset")


def _register(kind: DatasetKind) -> None:
    """Add ``kind`` to :data:`DATASETS`; a name taken by another class is an error
    (re-importing the same class replaces it)."""
    known = DATASETS.get(kind.name)
    cls = type(kind)
    if known is not None and (type(known).__module__, type(known).__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ValueError(
            f"dataset kind '{kind.name}' of {cls.__module__}.{cls.__qualname__} is taken by "
            f"{type(known).__module__}.{type(known).__qualname__}: give the new kind another name"
        )
    DATASETS[kind.name] = kind


def discover_datasets() -> dict[str, DatasetKind]:
    """Import every module on the :data:`KINDS_PACKAGE` path (their kinds register
    themselves); return :data:`DATASETS`."""
    package = importlib.import_module(KINDS_PACKAGE)
    importlib.invalidate_caches()
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{KINDS_PACKAGE}.{module.name}")
    return DATASETS


@functools.cache
def _discover_once() -> None:
    discover_datasets()


def dataset_kinds() -> dict[str, DatasetKind]:
    """:data:`DATASETS`, every module of the kinds' package imported on first use (a kind
    module imported on its own before that registers only its kind)."""
    _discover_once()
    return DATASETS


def dataset_kind(name: str) -> DatasetKind:
    """The kind registered as ``name``; an unknown name is a :class:`ConfigError`."""
    kinds = dataset_kinds()
    if name not in kinds:
        raise ConfigError(f"data.dataset must be one of {list(kinds)}, got {name!r}")
    return kinds[name]
