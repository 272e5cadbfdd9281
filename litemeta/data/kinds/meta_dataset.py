"""Meta-Dataset records (``data.dataset: meta-dataset``; Triantafillou et al., ICLR 2020):
one source's per-class ``*.tfrecords`` with ``dataset_spec.json`` at ``data.root``, or
several sources (``data.sources``, ``data.validation_sources``, ``data.test_sources``):
training tasks each from one source chosen uniformly per task, the other splits evaluated
source by source. ``data.meta_dataset`` holds the reader's settings."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from litemeta.config import ConfigError
from litemeta.data.base import ImageCollection
from litemeta.data.info import VERIFY_SIZE, sampled_sizes, verify_lines
from litemeta.data.metadataset import SPEC_FILE, MetaDatasetRecords, read_dataset_spec
from litemeta.data.multisource import MixedSourceTasks, PerSourceTasks
from litemeta.data.registry import DatasetKind, TaskSource
from litemeta.data.samplers import EpisodeSampler, VariableWaySampler
from litemeta.data.settings import DataConfig


@dataclass
class MetaDatasetSettings:
    """``verify_crc``: check each record's CRC32C when it is read (docs/benchmarks.md has
    its cost; the length checksums are always checked)."""

    verify_crc: bool = True


class MetaDatasetKind(DatasetKind):
    name = "meta-dataset"
    settings = MetaDatasetSettings
    multi_source = True
    detect_order = 10

    def collection(self, data: DataConfig, split: str, size: int | None) -> MetaDatasetRecords:
        root = self.checked_root(data)
        verify_crc = data.meta_dataset.verify_crc
        return MetaDatasetRecords(
            root, split=split, on_error=data.on_error, verify_crc=verify_crc, decode_size=size
        )

    def episode_sampler(
        self, data: DataConfig, collection: ImageCollection, training: bool
    ) -> EpisodeSampler:
        """A variable-way sampler uses the source's class hierarchy where
        ``data.sampler.hierarchy`` is on, except a DAG (ImageNet's) in training unless
        ``data.sampler.train_dag``."""
        config = data.sampler
        if config.kind != "variable" or not isinstance(collection, MetaDatasetRecords):
            return super().episode_sampler(data, collection, training)
        hierarchy = collection.hierarchy if config.hierarchy else None
        if hierarchy is not None and hierarchy.kind == "dag" and training:
            hierarchy = hierarchy if config.train_dag else None
        return VariableWaySampler(hierarchy=hierarchy)

    def task_dataset(
        self, data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
    ) -> TaskSource:
        if not data.multi_source:
            return super().task_dataset(data, split, num_tasks, image_size, seed)
        return self._multi_source_tasks(data, split, num_tasks, image_size, seed)

    def _multi_source_tasks(
        self, data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
    ) -> MixedSourceTasks | PerSourceTasks:
        """Tasks of several record folders: the training split's drawn from a source chosen
        uniformly per task (``num_tasks`` in all), any other split's ``num_tasks`` per
        source."""
        size = self.decode_size(data, image_size)
        by_source = {}
        for name, folder in source_folders(data, split).items():
            one_source = dataclasses.replace(
                data, root=str(folder), sources=None, validation_sources=None, test_sources=None
            )
            collection = self.cached(data, self.collection(one_source, split, size))
            by_source[name] = self.episodes(data, collection, split, num_tasks, seed)
        if split == data.train_split:
            return MixedSourceTasks(by_source, num_tasks, seed=seed)
        return PerSourceTasks(by_source)

    def detect(self, target: str) -> bool:
        return (Path(target) / SPEC_FILE).is_file()

    def describe(self, target: str, verify: bool = False) -> str:
        root = Path(target)
        spec = read_dataset_spec(root / SPEC_FILE)
        splits = [s for s, ids in spec.classes_per_split.items() if ids]
        if not splits:
            raise ValueError(f"{root / SPEC_FILE} lists no classes in any split")
        records = [MetaDatasetRecords(root, split=s, decode_size=VERIFY_SIZE) for s in splits]
        lines = [f"Meta-Dataset records: {root}", *_summary_lines(records)]
        return "\n".join(lines + (verify_lines(records) if verify else []))


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


def _summary_lines(records: list[MetaDatasetRecords]) -> list[str]:
    spec = records[0].spec
    lines = []
    for split, class_ids in spec.classes_per_split.items():
        images = sum(spec.images_per_class.get(c, 0) for c in class_ids)
        lines.append(f"{split.lower()}: {len(class_ids)} classes, {images} images")
    missing = []
    for collection in records:
        for class_id in collection.class_ids:
            try:
                collection.class_files(class_id)
            except FileNotFoundError:
                missing.append(f"{class_id} ({spec.class_names.get(class_id, 'unnamed')})")
    if missing:
        more = ", ..." if len(missing) > 5 else ""
        lines.append(
            f"missing: no record file for {len(missing)} classes: {', '.join(missing[:5])}"
            f"{more} (file pattern {spec.file_pattern!r}); the conversion is incomplete"
        )
    lines.append(f"image sizes (sampled): {sampled_sizes(records)}")
    return lines
