"""ORBIT (``data.dataset: orbit``; Massiceti et al., ICCV 2021): one task per user, shaped
by the user's objects and videos. ``data.orbit`` is the saved form of
:class:`~litemeta.data.OrbitTaskSampler`: ``target`` picks clean (CLE-VE) or clutter
(CLU-VE) target videos, ``protocol`` a published version of ORBIT's protocol whose every
choice a setting of the same name overrides (docs/data.md, "Fidelity: ORBIT"). The training
split gets the benchmark's training sampler, the others its test protocol."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

from litemeta.data.info import VERIFY_SIZE, sampled_sizes, verify_lines
from litemeta.data.orbit import VIDEO_TYPES, OrbitDataset
from litemeta.data.orbit_sampler import OrbitTaskSampler
from litemeta.data.orbit_tasks import InterleavedOrbitTasks, OrbitTaskDataset
from litemeta.data.registry import DatasetKind
from litemeta.data.settings import DataConfig

ORBIT_SPLITS = ("train", "validation", "test")


class OrbitKind(DatasetKind):
    name = "orbit"
    settings = OrbitTaskSampler
    episodic = False
    detect_order = 20

    def collection(self, data: DataConfig, split: str, size: int | None) -> OrbitDataset:
        root = self.checked_root(data)
        return OrbitDataset(root, split, on_error=data.on_error, decode_size=size)

    def task_dataset(
        self, data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
    ) -> InterleavedOrbitTasks:
        """Tasks that cycle over the users, so that consecutive tasks come from different
        users."""
        collection = self.collection(data, split, self.decode_size(data, image_size))
        self.cached(data, collection)
        mode = "train" if split == data.train_split else "test"
        sampler = dataclasses.replace(data.orbit, mode=mode)
        index = collection.index
        users = sum(1 for user in range(len(index.users)) if sampler.objects(index, user))
        per_user = math.ceil(num_tasks / max(users, 1))
        by_user = OrbitTaskDataset(collection, sampler, tasks_per_user=per_user, seed=seed)
        return InterleavedOrbitTasks(by_user, num_tasks)

    def task_shape(self, data: DataConfig) -> str:
        return (
            f"one user each, way 2 to min(objects, {data.orbit.resolved.max_way}), "
            "ORBIT's training sampler"
        )

    def detect(self, target: str) -> bool:
        root = Path(target)
        return root.is_dir() and any(
            any((root / s).glob(f"*/*/{t}")) for s in ORBIT_SPLITS for t in VIDEO_TYPES
        )

    def describe(self, target: str, verify: bool = False) -> str:
        root = Path(target)
        splits = [s for s in ORBIT_SPLITS if (root / s).is_dir()]
        datasets = [OrbitDataset(root, s, decode_size=VERIFY_SIZE) for s in splits]
        lines = [f"ORBIT: {root}", *map(_split_line, splits, datasets)]
        return "\n".join(lines + (verify_lines(datasets) if verify else []))


def _split_line(split: str, dataset: OrbitDataset) -> str:
    videos = Counter(v.video_type for v in dataset.index.videos)
    frames = sum(dataset.num_items(c) for c in range(dataset.num_classes))
    video_text = ", ".join(f"{videos[t]} {t}" for t in VIDEO_TYPES)
    return (
        f"{split}: {len(dataset.index.users)} users, {dataset.num_classes} objects, "
        f"videos {video_text}, {frames} frames, frame sizes (sampled) {sampled_sizes([dataset])}"
    )
