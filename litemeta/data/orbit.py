"""ORBIT (Massiceti et al., ICCV 2021): user-centric few-shot tasks from real videos.

On disk: ``root/{train,validation,test}/<user>/<object>/{clean,clutter}/<video>/
<video>-00001.jpg``, with optional per-video annotations
``root/annotations/<split>/<video>.json`` mapping each frame file name to a dict with
``object_not_present_issue`` (and bounding boxes or quality issues).

A task is one user: the user's objects are the classes, the context (support) comes
from clean videos, and the target (query) either from held-out clean videos (CLE-VE)
or from clutter videos (CLU-VE). Frames are taken as clips of ``clip_length``
consecutive frames; target frames carry their video as ``Task.query_groups`` for
video-level metrics. Following the ORBIT protocol, frame annotations are only used to
filter target videos (frames without the object dropped, videos with too few valid
frames skipped), never the context.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from litemeta.data.base import ImageCollection
from litemeta.data.episodic import load_task, task_rng
from litemeta.data.images import IMAGE_EXTENSIONS, read_image_file
from litemeta.data.samplers import EpisodeSpec
from litemeta.tasks import Task

VIDEO_TYPES = ("clean", "clutter")


@dataclass(frozen=True)
class OrbitVideo:
    """One video: its frames (in order) as items ``first_item ..`` of its object's class.

    ``object_present`` is the per-frame annotation (``not object_not_present_issue``),
    or ``None`` when the video has no annotation file.
    """

    video_id: int
    name: str
    object_id: int
    video_type: str
    first_item: int
    num_frames: int
    object_present: np.ndarray | None = None

    def items(self) -> np.ndarray:
        return np.arange(self.first_item, self.first_item + self.num_frames)

    def valid_items(self) -> np.ndarray:
        """Items of frames that show the object (all frames when unannotated)."""
        if self.object_present is None:
            return self.items()
        return self.items()[self.object_present]


@dataclass(frozen=True)
class OrbitIndex:
    """Users, their objects (class ids) and each object's videos by type: no images."""

    users: list[str]
    user_objects: list[list[int]]
    videos: list[OrbitVideo]
    object_videos: list[dict[str, list[int]]]


class OrbitDataset(ImageCollection):
    """The frames of one ORBIT split; class ``c`` is one user's object."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        annotations_root: str | os.PathLike[str] | None = None,
        on_error: str = "raise",
    ) -> None:
        self.root = Path(root)
        split_dir = self.root / split
        if not split_dir.is_dir():
            found = sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []
            raise FileNotFoundError(
                f"ORBIT split folder {split_dir} does not exist (found {found}); root must hold "
                "train/validation/test folders of <user>/<object>/{clean,clutter}/<video>/"
            )
        if annotations_root is None:
            default = self.root / "annotations" / split
            annotations = default if default.is_dir() else None
        else:
            annotations = Path(annotations_root)
            if not annotations.is_dir():
                raise FileNotFoundError(f"annotation folder {annotations} does not exist")
        names: list[str] = []
        self._frames: list[list[str]] = []
        self._item_types: list[list[str]] = []
        users, user_objects, videos, object_videos = [], [], [], []
        for user_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            objects = []
            for object_dir in sorted(p for p in user_dir.iterdir() if p.is_dir()):
                object_id = len(names)
                frames: list[str] = []
                types: list[str] = []
                by_type: dict[str, list[int]] = {t: [] for t in VIDEO_TYPES}
                for video_type in VIDEO_TYPES:
                    type_dir = object_dir / video_type
                    if not type_dir.is_dir():
                        continue
                    for video_dir in sorted(p for p in type_dir.iterdir() if p.is_dir()):
                        paths = sorted(
                            str(p)
                            for p in video_dir.iterdir()
                            if p.suffix.lower() in IMAGE_EXTENSIONS
                        )
                        if not paths:
                            warnings.warn(
                                f"skipping ORBIT video without frames: {video_dir}", stacklevel=2
                            )
                            continue
                        present = _object_present(annotations, video_dir.name, paths)
                        video = OrbitVideo(
                            len(videos),
                            video_dir.name,
                            object_id,
                            video_type,
                            len(frames),
                            len(paths),
                            present,
                        )
                        videos.append(video)
                        by_type[video_type].append(video.video_id)
                        frames.extend(paths)
                        types.extend([video_type] * len(paths))
                if not frames:
                    continue
                names.append(f"{user_dir.name}/{object_dir.name}")
                self._frames.append(frames)
                self._item_types.append(types)
                object_videos.append(by_type)
                objects.append(object_id)
            if objects:
                users.append(user_dir.name)
                user_objects.append(objects)
        if not users:
            raise ValueError(
                f"no ORBIT videos found under {split_dir}; expected "
                "<user>/<object>/{clean,clutter}/<video>/<video>-00001.jpg"
            )
        super().__init__(f"orbit/{split}", names, on_error)
        self.index = OrbitIndex(users, user_objects, videos, object_videos)

    def num_items(self, class_id: int) -> int:
        return len(self._frames[class_id])

    def item_source(self, class_id: int, item: int) -> str:
        return self._frames[class_id][item]

    def item_styles(self, class_id: int) -> list[str] | None:
        """The video type (clean / clutter) of each frame."""
        return self._item_types[class_id]

    def read_item(self, class_id: int, item: int, image_size: int) -> Tensor:
        return read_image_file(self._frames[class_id][item], image_size)


def _object_present(annotations: Path | None, video: str, frames: list[str]) -> np.ndarray | None:
    if annotations is None:
        return None
    path = annotations / f"{video}.json"
    if not path.is_file():
        return None
    try:
        per_frame = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read ORBIT annotation {path}: {error}") from error
    present = []
    for frame in frames:
        annotation = per_frame.get(Path(frame).name)
        missing = annotation is None or annotation.get("object_not_present_issue") is None
        present.append(True if missing else not annotation["object_not_present_issue"])
    return np.asarray(present, dtype=bool)


@dataclass(frozen=True)
class OrbitTaskSampler:
    """User-centric ORBIT tasks (Massiceti et al., ICCV 2021).

    ``target='clean'`` is CLE-VE (target from held-out clean videos, at least one per
    object), ``'clutter'`` is CLU-VE. Each video gives clips of ``clip_length``
    consecutive frames: ``context_clips_per_video`` random clips per context video and
    ``target_clips_per_video`` per target video (``None``: as many as fit in
    ``max_target_frames_per_video``, the 2022 protocol's 200 random frames when
    ``clip_length=1``). Target videos with fewer than ``min_target_frames`` valid frames
    are skipped. ``max_way`` caps the objects per task (all of them when ``None``, as
    at test time).
    """

    target: Literal["clean", "clutter"] = "clutter"
    clip_length: int = 1
    context_clips_per_video: int | None = 8
    target_clips_per_video: int | None = None
    max_context_frames_per_video: int = 1000
    max_target_frames_per_video: int = 200
    max_context_videos: int | None = None
    max_target_videos: int | None = None
    max_way: int | None = None
    min_target_frames: int = 50
    drop_absent_target_frames: bool = True

    def __post_init__(self) -> None:
        if self.target not in ("clean", "clutter"):
            raise ValueError(
                f"target must be 'clean' (CLE-VE) or 'clutter' (CLU-VE), got {self.target!r}"
            )
        if self.clip_length < 1:
            raise ValueError(f"clip_length must be at least 1, got {self.clip_length}")

    def _target_videos(self, index: OrbitIndex, object_id: int) -> list[OrbitVideo]:
        ids = index.object_videos[object_id][self.target]
        return [index.videos[v] for v in ids]

    def _valid_target_items(self, video: OrbitVideo) -> np.ndarray:
        return video.valid_items() if self.drop_absent_target_frames else video.items()

    def check(self, index: OrbitIndex) -> None:
        """Fail early, naming the objects that cannot give a task."""
        problems = []
        for user, objects in zip(index.users, index.user_objects, strict=True):
            for object_id in objects:
                clean = index.object_videos[object_id]["clean"]
                need_clean = 2 if self.target == "clean" else 1
                if len(clean) < need_clean:
                    problems.append(
                        f"{user}: object {object_id} has {len(clean)} clean videos, "
                        f"needs {need_clean}"
                    )
        if problems:
            raise ValueError(
                f"{len(problems)} ORBIT objects cannot form {self.target}-target tasks, e.g. "
                f"{problems[:5]}; remove them or use the other target video type"
            )

    def _clips(self, items: np.ndarray, max_clips: int | None, rng: np.random.Generator):
        count = len(items) // self.clip_length
        take = count if max_clips is None else min(max_clips, count)
        starts = np.sort(rng.choice(count, size=take, replace=False)) * self.clip_length
        return [items[s : s + self.clip_length] for s in starts]

    def sample(self, index: OrbitIndex, user: int, rng: np.random.Generator) -> EpisodeSpec:
        objects = list(index.user_objects[user])
        if self.max_way is not None and len(objects) > self.max_way:
            objects = sorted(rng.choice(objects, size=self.max_way, replace=False).tolist())
        support: list[tuple[int, int]] = []
        query: list[tuple[int, int]] = []
        groups: list[int] = []
        for label, object_id in enumerate(objects):
            clean = [index.videos[v] for v in index.object_videos[object_id]["clean"]]
            order = rng.permutation(len(clean))
            if self.target == "clean":
                num_context = len(clean) - 1
                if self.max_context_videos is not None:
                    num_context = min(num_context, self.max_context_videos)
                context = [clean[i] for i in order[:num_context]]
                targets = [clean[i] for i in order[num_context:]]
            else:
                limit = self.max_context_videos or len(clean)
                context = [clean[i] for i in order[:limit]]
                targets = self._target_videos(index, object_id)
            for video in context:
                frames = video.items()[: self.max_context_frames_per_video]
                for clip in self._clips(frames, self.context_clips_per_video, rng):
                    support.extend((label, int(i)) for i in clip)
            targets = [
                v for v in targets if len(self._valid_target_items(v)) >= self.min_target_frames
            ]
            if self.max_target_videos is not None and len(targets) > self.max_target_videos:
                keep = rng.choice(len(targets), size=self.max_target_videos, replace=False)
                targets = [targets[i] for i in sorted(keep)]
            for video in targets:
                cap = self.max_target_frames_per_video // self.clip_length
                max_clips = (
                    cap
                    if self.target_clips_per_video is None
                    else min(cap, self.target_clips_per_video)
                )
                for clip in self._clips(self._valid_target_items(video), max_clips, rng):
                    query.extend((label, int(i)) for i in clip)
                    groups.extend([video.video_id] * len(clip))
        return EpisodeSpec(tuple(objects), tuple(support), tuple(query), tuple(groups))


class OrbitTaskDataset(Dataset):
    """``tasks_per_user`` tasks for every user of an ORBIT split, reproducible by seed.

    Task ``i`` is user ``i // tasks_per_user``, drawn from a generator seeded by
    ``(seed, i)``. Use with ``DataLoader(dataset, batch_size=None, num_workers=k)``.
    """

    def __init__(
        self,
        dataset: OrbitDataset,
        sampler: OrbitTaskSampler,
        image_size: int,
        tasks_per_user: int = 1,
        seed: int = 0,
        users: Sequence[str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.image_size = image_size
        self.tasks_per_user = tasks_per_user
        self.seed = seed
        known = dataset.index.users
        chosen = known if users is None else list(users)
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ValueError(f"unknown ORBIT users {unknown}; this split has {known}")
        self.user_ids = [known.index(u) for u in chosen]
        sampler.check(dataset.index)

    def __len__(self) -> int:
        return len(self.user_ids) * self.tasks_per_user

    def spec(self, index: int) -> EpisodeSpec:
        if not 0 <= index < len(self):
            raise IndexError(f"task index {index} out of range 0..{len(self) - 1}")
        user = self.user_ids[index // self.tasks_per_user]
        return self.sampler.sample(self.dataset.index, user, task_rng(self.seed, index))

    def user_of(self, index: int) -> str:
        return self.dataset.index.users[self.user_ids[index // self.tasks_per_user]]

    def __getitem__(self, index: int) -> Task:
        return load_task(self.dataset, self.spec(index), self.image_size)
