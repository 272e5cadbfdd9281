"""The ``data:`` section of an experiment: where tasks come from, as dataclasses read from
YAML (:mod:`litemeta.config`). Each dataset kind (:mod:`litemeta.data.registry`) adds its own
section beside the shared settings (``data.orbit``, ``data.vtab``, ``data.meta_dataset``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from litemeta.config import SECTIONS, ConfigError
from litemeta.data.loading import Workers
from litemeta.data.registry import DatasetKind, dataset_kind, dataset_kinds

__all__ = ["DataConfig", "SamplerConfig"]


@dataclass
class SamplerConfig:
    """``fixed``: ``way``-way ``shot``-shot with ``query`` queries per class. ``variable``:
    Meta-Dataset's variable-way variable-shot episodes (Triantafillou et al., 2020), with
    classes drawn from one node of the source's class hierarchy (ImageNet's WordNet
    graph, Omniglot's alphabets) where its ``dataset_spec.json`` has one, unless
    ``hierarchy`` is false. ``train_dag``: whether training episodes use a DAG too (LITE
    samples ImageNet without its DAG in training and with it in evaluation, hence false;
    Meta-Dataset's own trainer uses it in both); alphabets are used in every split."""

    kind: Literal["fixed", "variable"] = "fixed"
    way: int = 5
    shot: int = 5
    query: int = 2
    hierarchy: bool = True
    train_dag: bool = False

    def __post_init__(self) -> None:
        """A fixed-way task needs a class, a support image and a query image to be scored."""
        if self.kind != "fixed":
            return
        for key, value in (("way", self.way), ("shot", self.shot), ("query", self.query)):
            if value < 1:
                raise ConfigError(f"data.sampler.{key} must be at least 1, got {value}")


@dataclass
class DataConfig:
    """Where tasks come from.

    ``dataset`` names a registered kind (:mod:`litemeta.data.kinds`): ``emoji`` (built in),
    ``folders`` (``root/<class>/<images>`` with optional styles and ``splits.json``),
    ``orbit`` (ORBIT's on-disk layout), ``meta-dataset`` (per-class ``.tfrecords`` with
    ``dataset_spec.json``) or ``vtab`` (one VTAB-1k transfer task, evaluation only). Each
    kind's own settings are the section of its name (``data.orbit``, ``data.vtab``,
    ``data.meta_dataset``; docs/data.md), read as attributes (``data.orbit.target``).
    ``support_styles`` and ``query_styles`` take a task's support and query images from
    different styles. ``on_error: skip`` replaces an unreadable image by another of its
    class (with a warning naming it).

    Meta-Dataset from several record folders: ``sources`` lists the training sources
    (folders under ``root``, the records root, or paths), each training task drawn
    entirely from one source chosen uniformly per task (Meta-Dataset's multi-source
    pipeline); ``validation_sources`` and ``test_sources`` (``null``: ``sources``) are
    evaluated source by source, ``validation_tasks`` and ``evaluation.tasks`` tasks each,
    and reported per source with the average over sources. Without any of the three lists
    ``root`` is one source's folder.

    ``workers``: processes that load tasks ahead of the model (``auto``: none on the CPU,
    several with a GPU; results do not depend on it). ``cache_decoded`` keeps decoded
    images in memory (``auto``: for a kind whose images share one stored size, as the
    built-in emoji set's do, and are handed to the model at it and resized on its device).
    """

    dataset: str = "emoji"
    root: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    support_styles: list[str] | None = None
    query_styles: list[str] | None = None
    validation_tasks: int = 50
    #: Each kind's settings by section name (``orbit``: its ``OrbitTaskSampler``).
    sections: dict[str, Any] = field(default_factory=dict, metadata=SECTIONS)
    on_error: Literal["raise", "skip"] = "raise"
    sources: list[str] | None = None
    validation_sources: list[str] | None = None
    test_sources: list[str] | None = None
    workers: Workers = "auto"
    cache_decoded: bool | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        dataset_kind(self.dataset)  # a name no kind registered is refused, naming the known
        if self.root is not None:
            self.root = os.path.expanduser(self.root)
        for key, settings in self.section_types().items():
            self.sections.setdefault(key, settings())
        self._check_source_lists()
        if self.validation_tasks < 0:
            raise ConfigError(
                "data.validation_tasks must be >= 0 (0: no validation), "
                f"got {self.validation_tasks}"
            )

    @classmethod
    def section_types(cls) -> dict[str, type]:
        """The settings dataclass of each registered kind that has one, by section name."""
        return {
            kind.section: kind.settings
            for kind in dataset_kinds().values()
            if kind.settings is not None
        }

    def __getattr__(self, name: str) -> Any:
        """A kind's settings section as an attribute: ``data.orbit``, ``data.vtab``."""
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no setting or section {name!r}")

    @property
    def kind(self) -> DatasetKind:
        """The registered kind that ``dataset`` names: its reader, tasks and policies."""
        return dataset_kind(self.dataset)

    def check_trainable(self) -> None:
        """Refuse a dataset whose kind has nothing to meta-train on (VTAB's one test task)."""
        if not self.kind.trainable:
            raise ConfigError(
                f"data.dataset={self.dataset} has no tasks to meta-train on, only test "
                "tasks: evaluate it with `litemeta evaluate`, and meta-train on another dataset"
            )

    @property
    def multi_source(self) -> bool:
        """Whether tasks come from several record folders (any of the source lists set)."""
        return any(
            names is not None
            for names in (self.sources, self.validation_sources, self.test_sources)
        )

    def _check_source_lists(self) -> None:
        for key in ("sources", "validation_sources", "test_sources"):
            names = getattr(self, key)
            if names is None:
                continue
            if not self.kind.multi_source:
                several = [name for name, kind in dataset_kinds().items() if kind.multi_source]
                raise ConfigError(
                    f"data.{key} lists record folders of several sources, which the "
                    f"{self.dataset!r} dataset does not take: set data.dataset="
                    f"{' or '.join(several)} or drop data.{key}"
                )
            if not names or not all(isinstance(name, str) and name for name in names):
                raise ConfigError(
                    f"data.{key} must be a non-empty list of source folders (e.g. "
                    f"[omniglot, aircraft]) or null, got {names!r}"
                )
            folders = [Path(name).name for name in names]
            twice = sorted({name for name in folders if folders.count(name) > 1})
            if twice:
                raise ConfigError(
                    f"data.{key} names the source(s) {twice} twice (sources are named by "
                    "their folder); list each once"
                )
