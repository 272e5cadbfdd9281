"""ORBIT tasks as datasets: :class:`OrbitTaskDataset` draws each user's tasks with an
:class:`~litemeta.data.orbit_sampler.OrbitTaskSampler` and loads their frames from an
:class:`~litemeta.data.orbit.OrbitDataset`; :class:`InterleavedOrbitTasks` cycles over users.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from litemeta.data.episodic import load_task, task_rng
from litemeta.data.orbit import OrbitDataset
from litemeta.data.orbit_sampler import OrbitTaskSampler
from litemeta.data.samplers import EpisodeSpec
from litemeta.tasks import Task


class OrbitTaskDataset(Dataset):
    """``tasks_per_user`` tasks for every user of an ORBIT split, reproducible by seed.

    Users without any usable object are left out (with a warning), as in ORBIT; naming one
    in ``users`` is an error. Task ``i`` is user ``i // tasks_per_user``, drawn from a
    generator seeded by ``(seed, i)`` (its targets, under a protocol whose test tasks share
    them, from one seeded by the user's first task). Frames come at the ``dataset``'s decode
    size. Use with ``DataLoader(dataset, batch_size=None, num_workers=k)``.
    """

    def __init__(
        self,
        dataset: OrbitDataset,
        sampler: OrbitTaskSampler,
        *,
        tasks_per_user: int = 1,
        seed: int = 0,
        users: Sequence[str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.tasks_per_user = tasks_per_user
        self.seed = seed
        index = dataset.index
        known = index.users
        chosen = known if users is None else list(users)
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ValueError(f"unknown ORBIT users {unknown}; this split has {known}")
        dropped = [
            f"{dataset.class_names[o]}"
            for u in range(len(known))
            for o in sorted(set(index.user_objects[u]) - set(sampler.objects(index, u)))
        ]
        if dropped:
            warnings.warn(
                f"{len(dropped)} ORBIT objects of {dataset.name} have no context video or no "
                f"{sampler.target} target video with {sampler.resolved.min_target_frames} "
                f"valid frames and are left out of tasks, as in ORBIT: {dropped[:5]}",
                stacklevel=2,
            )
        empty = [u for u in chosen if not sampler.objects(index, known.index(u))]
        if empty and (users is not None or len(empty) == len(chosen)):
            raise ValueError(
                f"ORBIT users {empty} have no object with both a context video and an eligible "
                f"{sampler.target} target video; choose other users, the other target type, or "
                "a smaller min_target_frames"
            )
        self.user_ids = [known.index(u) for u in chosen if u not in empty]

    def __len__(self) -> int:
        return len(self.user_ids) * self.tasks_per_user

    def spec(self, index: int) -> EpisodeSpec:
        if not 0 <= index < len(self):
            raise IndexError(f"task index {index} out of range 0..{len(self) - 1}")
        user = self.user_ids[index // self.tasks_per_user]
        targets = None
        if self.sampler.mode == "test" and self.sampler.resolved.same_targets_per_user:
            first = index - index % self.tasks_per_user  # the user's first task
            targets = np.random.default_rng([self.seed, first, 1])
        rng = task_rng(self.seed, index)
        return self.sampler.sample(self.dataset.index, user, rng, targets)

    def user_of(self, index: int) -> str:
        return self.dataset.index.users[self.user_ids[index // self.tasks_per_user]]

    def __getitem__(self, index: int) -> Task:
        return load_task(self.dataset, self.spec(index))


class InterleavedOrbitTasks(Dataset):
    """The first ``num_tasks`` tasks of an :class:`OrbitTaskDataset` taken user by user in
    turn: item ``i`` is user ``i % users``'s task ``i // users``.

    ``OrbitTaskDataset`` is user-major (one user's ``tasks_per_user`` tasks, then the
    next user's), so a run that uses its first tasks would see only the first users; here
    consecutive tasks come from different users. ``num_tasks`` (default: all) may not
    exceed ``len(by_user)``.
    """

    def __init__(self, by_user: OrbitTaskDataset, num_tasks: int | None = None) -> None:
        self.by_user = by_user
        self.users = len(by_user.user_ids)
        self.per_user = by_user.tasks_per_user
        self.num_tasks = len(by_user) if num_tasks is None else num_tasks
        self._check_num_tasks_fits()

    def _check_num_tasks_fits(self) -> None:
        if not 0 <= self.num_tasks <= len(self.by_user):
            raise ValueError(
                f"num_tasks must be between 0 and the {len(self.by_user)} tasks of "
                f"{self.users} users x {self.per_user} tasks per user, got {self.num_tasks}; "
                "raise tasks_per_user or ask for fewer tasks"
            )

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
