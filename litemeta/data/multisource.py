"""Tasks from several sources (Meta-Dataset's record folders), each task from one source.

Meta-Dataset (Triantafillou et al., ICLR 2020) meta-trains on episodes of several sources:
``make_multisource_episode_pipeline`` (google-research/meta-dataset, ``data/pipeline.py``)
draws the source of each episode uniformly and independently (``sample_from_datasets``
without weights) and the episode entirely from that source, with the source's own sampler.
:class:`MixedSourceTasks` does the same. Meta-Dataset and LITE evaluate each test source on
its own (600 tasks each); :class:`PerSourceTasks` lists each source's tasks in turn, so
that ``evaluate`` reports every source and the average over sources.

Both take the sources as :class:`~litemeta.data.episodic.EpisodicTaskDataset`\\ s (a
collection, its pools and its sampler) by name, and both tell the source of task ``i``
(``source_of(i)``), which :func:`litemeta.evaluation.evaluate` reads.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

import numpy as np
from torch.utils.data import Dataset

from litemeta.data.episodic import EpisodicTaskDataset, task_rng
from litemeta.data.samplers import EpisodeSpec
from litemeta.tasks import Task

__all__ = ["MixedSourceTasks", "PerSourceTasks"]


def _check_sources(sources: Mapping[str, EpisodicTaskDataset]) -> list[str]:
    if not sources:
        raise ValueError("no sources: give at least one source's task dataset by name")
    return list(sources)


class MixedSourceTasks(Dataset):
    """``num_tasks`` tasks, each drawn entirely from one source chosen uniformly at random,
    as Meta-Dataset's multi-source episode pipeline draws them.

    Task ``i`` depends only on ``(seed, i)``: its generator first picks the source, then
    draws the episode with that source's sampler (each source dataset's own ``num_tasks``
    and ``seed`` are not used). Sources are picked with equal probability whatever their
    size, so a small source is seen as often as ImageNet.
    """

    def __init__(
        self, sources: Mapping[str, EpisodicTaskDataset], num_tasks: int, *, seed: int = 0
    ) -> None:
        self.names = _check_sources(sources)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
        self.sources = dict(sources)
        self.num_tasks = num_tasks
        self.seed = seed

    def __len__(self) -> int:
        return self.num_tasks

    def spec(self, index: int) -> tuple[str, EpisodeSpec]:
        """The source and episode spec of task ``index`` (no images loaded)."""
        rng = self._task_rng(index)
        name = self._pick_source(rng)
        return name, self.sources[name].draw(rng)

    def _task_rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task index {index} out of range 0..{self.num_tasks - 1}")
        return task_rng(self.seed, index)

    def _pick_source(self, rng: np.random.Generator) -> str:
        return self.names[int(rng.integers(len(self.names)))]

    def source_of(self, index: int) -> str:
        """The source of task ``index`` (drawn without drawing its episode)."""
        return self._pick_source(self._task_rng(index))

    def __getitem__(self, index: int) -> Task:
        name, spec = self.spec(index)
        return self.sources[name].load(spec)


class PerSourceTasks(Dataset):
    """Each source's tasks in turn: first all of the first source's, then the next's.

    Every source keeps its own task stream, so a source's tasks are those it gives alone
    (its dataset's ``num_tasks`` and ``seed``), whichever other sources are listed.
    """

    def __init__(self, sources: Mapping[str, EpisodicTaskDataset]) -> None:
        self.names = _check_sources(sources)
        self.sources = dict(sources)
        self._starts = [0]
        for name in self.names:
            self._starts.append(self._starts[-1] + len(self.sources[name]))

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[str, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"task index {index} out of range 0..{len(self) - 1}")
        position = bisect.bisect_right(self._starts, index) - 1
        return self.names[position], index - self._starts[position]

    def spec(self, index: int) -> tuple[str, EpisodeSpec]:
        """The source and episode spec of task ``index`` (no images loaded)."""
        name, local = self._locate(index)
        return name, self.sources[name].spec(local)

    def source_of(self, index: int) -> str:
        return self._locate(index)[0]

    def __getitem__(self, index: int) -> Task:
        name, local = self._locate(index)
        return self.sources[name][local]
