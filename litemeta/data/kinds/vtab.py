"""VTAB-1k (``data.dataset: vtab``; Zhai et al., 2019): one transfer task per dataset,
for evaluation only; ``data.vtab`` picks its support rule (``vtab-1k``,
``lite-first-1000`` or ``random``, see :mod:`litemeta.data.vtab`)."""

from __future__ import annotations

from pathlib import Path

from litemeta.config import ConfigError
from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.info import VERIFY_SIZE, class_folder_lines, verify_lines
from litemeta.data.registry import DatasetKind
from litemeta.data.settings import DataConfig
from litemeta.data.vtab import VTAB_1K_SPLITS, VtabSettings, vtab_task
from litemeta.tasks import Task

#: The class-folder sets a VTAB task's folder may hold, in the order ``data info`` lists them.
FOLDERS = (*VTAB_1K_SPLITS, "train", "test")


class VtabKind(DatasetKind):
    name = "vtab"
    settings = VtabSettings
    trainable = False
    episodic = False
    detect_order = 30

    def task_dataset(
        self, data: DataConfig, split: str, num_tasks: int, image_size: int, seed: int
    ) -> list[Task]:
        """The dataset's one task (support from ``train800/`` + ``val200/`` or ``train/``,
        queries from ``test/``), for its test split only."""
        root = self.checked_root(data)
        if split != data.test_split:
            raise ConfigError(
                f"vtab has no {split!r} split: it has one test task per dataset (support from "
                "train800/ + val200/ or train/, queries from test/), so evaluate its "
                f"{data.test_split!r} split "
                f"(`litemeta evaluate` without --split, or --split {data.test_split}); to "
                "meta-train, use another dataset"
            )
        task = vtab_task(
            root,
            support=data.vtab.support,
            support_size=data.vtab.support_size,
            query_limit=data.vtab.query_limit,
            decode_size=self.decode_size(data, image_size),
            seed=seed,
            on_error=data.on_error,
        )
        return [task]

    def task_shape(self, data: DataConfig) -> str:
        return f"one task, support rule {data.vtab.support}"

    def detect(self, target: str) -> bool:
        """A VTAB-1k export: ``train800/``, ``val200/`` and ``test/`` class folders."""
        root = Path(target)
        return all((root / name).is_dir() for name in (*VTAB_1K_SPLITS, "test"))

    def describe(self, target: str, verify: bool = False) -> str:
        root = Path(target)
        lines, collections = [f"VTAB task: {root}"], []
        for name in FOLDERS:
            if (root / name).is_dir():
                collection = ClassFolderDataset(root / name, decode_size=VERIFY_SIZE)
                collections.append(collection)
                lines += [f"{name}/:", *(f"  {line}" for line in class_folder_lines(collection))]
        return "\n".join(lines + (verify_lines(collections) if verify else []))
