"""ORBIT (Massiceti et al., ICCV 2021): user-centric few-shot tasks from real videos.

On disk: ``root/{train,validation,test}/<user>/<object>/{clean,clutter}/<video>/
<video>-00001.jpg``, with optional per-video annotations
``root/annotations/<split>/<video>.json`` mapping each frame file name to a dict with
``object_not_present_issue`` (and bounding boxes or quality issues).

A task is one user: the user's objects are the classes, the context (support) comes
from clean videos, and the target (query) either from held-out clean videos (CLE-VE)
or from clutter videos (CLU-VE). Frames are taken as clips of ``clip_length``
consecutive frames (``Task.support_clips`` / ``query_clips``, whose features are
averaged); target frames carry their video as ``Task.query_groups`` for video-level
metrics. ``OrbitTaskSampler(protocol=...)`` follows one published version of the
benchmark's protocol (:data:`ORBIT_PROTOCOLS`); frame annotations only ever filter target
videos, never the context.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from litemeta.config import RUNTIME
from litemeta.data.base import ImageCollection
from litemeta.data.episodic import load_task, task_rng
from litemeta.data.images import IMAGE_EXTENSIONS, check_decode_size, read_image_file
from litemeta.data.samplers import EpisodeSpec
from litemeta.tasks import Task

VIDEO_TYPES = ("clean", "clutter")


@dataclass(frozen=True)
class OrbitVideo:
    """One video: its frames (in order) as items ``first_item ..`` of its object's class.

    ``object_present`` is whether each frame is annotated ``object_not_present_issue:
    false`` (a frame annotated ``true`` or ``null``, or missing from the file, is not), or
    ``None`` when the video has no annotation file.
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


@dataclass(frozen=True)
class OrbitIndex:
    """Users, their objects (class ids) and each object's videos by type: no images."""

    users: list[str]
    user_objects: list[list[int]]
    videos: list[OrbitVideo]
    object_videos: list[dict[str, list[int]]]


class OrbitDataset(ImageCollection):
    """The frames of one ORBIT split; class ``c`` is one user's object.

    The split folder is indexed in sorted order (users, their objects, each object's clean
    then clutter videos, each video's frames) into ``index``, an :class:`OrbitIndex`.
    What cannot be used is left out with one warning naming a few: video folders without
    frames, frames outside a video folder, folders other than ``clean``/``clutter`` in an
    object, objects without frames and users without such objects. Frames come at their
    stored size, or resized to ``decode_size`` square as they are decoded.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        annotations_root: str | os.PathLike[str] | None = None,
        on_error: str = "raise",
        decode_size: int | None = None,
    ) -> None:
        check_decode_size(decode_size)  # before the long walk over the split folder
        self.root = Path(root)
        split_dir = self.root / split
        self._check_split_folder_exists(split_dir)
        annotations = self._annotation_folder(split, annotations_root)
        indexer = _SplitIndexer(annotations, split_dir)
        index = indexer.index_split()
        if indexer.left_out:
            more = ", ..." if len(indexer.left_out) > 5 else ""
            warnings.warn(
                f"{len(indexer.left_out)} folders under ORBIT split {split_dir} are left out: "
                f"{', '.join(indexer.left_out[:5])}{more}; expected "
                "<user>/<object>/{clean,clutter}/<video>/<frames>",
                stacklevel=2,
            )
        self._check_split_has_videos(index, split_dir)
        super().__init__(f"orbit/{split}", indexer.class_names, on_error, decode_size)
        self.index = index
        self._frames = indexer.frames
        self._item_types = indexer.item_types

    def _check_split_folder_exists(self, split_dir: Path) -> None:
        if not split_dir.is_dir():
            found = sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []
            raise FileNotFoundError(
                f"ORBIT split folder {split_dir} does not exist (found {found}); root must hold "
                "train/validation/test folders of <user>/<object>/{clean,clutter}/<video>/"
            )

    def _annotation_folder(
        self, split: str, annotations_root: str | os.PathLike[str] | None
    ) -> Path | None:
        """The folder of per-video annotation files: ``annotations_root`` when given, else
        ``root/annotations/<split>`` when it exists, else none (no frame is filtered)."""
        if annotations_root is None:
            default = self.root / "annotations" / split
            return default if default.is_dir() else None
        annotations = Path(annotations_root)
        self._check_annotation_folder_exists(annotations)
        return annotations

    @staticmethod
    def _check_annotation_folder_exists(annotations: Path) -> None:
        if not annotations.is_dir():
            raise FileNotFoundError(
                f"annotation folder {annotations} does not exist; point annotations_root to "
                "the folder of <video>.json files, or leave it out to use "
                "root/annotations/<split> when present"
            )

    @staticmethod
    def _check_split_has_videos(index: OrbitIndex, split_dir: Path) -> None:
        if not index.users:
            raise ValueError(
                f"no ORBIT videos found under {split_dir}; expected "
                "<user>/<object>/{clean,clutter}/<video>/<video>-00001.jpg"
            )

    def num_items(self, class_id: int) -> int:
        return len(self._frames[class_id])

    def item_source(self, class_id: int, item: int) -> str:
        return self._frames[class_id][item]

    def item_styles(self, class_id: int) -> list[str] | None:
        """The video type (clean / clutter) of each frame."""
        return self._item_types[class_id]

    def read_item(self, class_id: int, item: int) -> Tensor:
        return read_image_file(self._frames[class_id][item], self.decode_size)


def _subfolders(folder: Path) -> list[Path]:
    """The folders directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _list_frames(video_dir: Path) -> list[str]:
    """The image files of a video folder, sorted by name (frame order)."""
    return sorted(str(p) for p in video_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _object_present(annotations: Path | None, video: str, frames: list[str]) -> np.ndarray | None:
    """Whether each frame is annotated as showing the object (``object_not_present_issue``
    exactly ``false``), from ``annotations/<video>.json``; ``None`` without an annotation
    file. As in ORBIT's filter, a frame annotated ``null`` does not count as showing it,
    nor does one missing from the file (on which ORBIT's code fails)."""
    if annotations is None:
        return None
    path = annotations / f"{video}.json"
    if not path.is_file():
        return None
    try:
        per_frame = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _annotation_error(path, str(error)) from error
    if not isinstance(per_frame, dict):
        raise _annotation_error(path, f"expected an object of frame names, got {_short(per_frame)}")
    present = []
    for frame in frames:
        annotation = per_frame.get(Path(frame).name)
        if annotation is not None and not isinstance(annotation, dict):
            problem = f"frame {Path(frame).name} has {_short(annotation)}, not an object"
            raise _annotation_error(path, problem)
        issue = None if annotation is None else annotation.get("object_not_present_issue")
        if issue is not None and not isinstance(issue, bool):
            problem = f"object_not_present_issue of {Path(frame).name} is {_short(issue)}"
            raise _annotation_error(path, f"{problem}, not true, false or null")
        present.append(issue is False)
    return np.asarray(present, dtype=bool)


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _annotation_error(path: Path, problem: str) -> ValueError:
    return ValueError(
        f"cannot read ORBIT annotation {path}: {problem}; repair or delete the file (a video "
        "without one keeps all its frames)"
    )


class _SplitIndexer:
    """Builds an :class:`OrbitIndex` of one split folder, and each object's frame list and
    frame video types, one user, object and video at a time (see :class:`OrbitDataset`);
    ``left_out`` names what cannot be used, relative to the split folder."""

    def __init__(self, annotations: Path | None, split_dir: Path) -> None:
        self.annotations = annotations
        self.split_dir = split_dir
        self.left_out: list[str] = []
        self.class_names: list[str] = []
        self.frames: list[list[str]] = []
        self.item_types: list[list[str]] = []
        self.users: list[str] = []
        self.user_objects: list[list[int]] = []
        self.videos: list[OrbitVideo] = []
        self.object_videos: list[dict[str, list[int]]] = []

    def index_split(self) -> OrbitIndex:
        for user_dir in _subfolders(self.split_dir):
            self._add_user(user_dir)
        return OrbitIndex(self.users, self.user_objects, self.videos, self.object_videos)

    def _leave_out(self, folder: Path, why: str) -> None:
        self.left_out.append(f"{folder.relative_to(self.split_dir)} ({why})")

    def _add_user(self, user_dir: Path) -> None:
        """Add the user's objects; a user none of whose objects has frames is left out."""
        kept = []
        for object_dir in _subfolders(user_dir):
            object_id = self._add_object(user_dir.name, object_dir)
            if object_id is not None:
                kept.append(object_id)
        if not kept:
            self._leave_out(user_dir, "a user without videos")
            return
        self.users.append(user_dir.name)
        self.user_objects.append(kept)

    def _videos(self, object_dir: Path) -> Iterator[tuple[str, Path, list[str]]]:
        """``(video type, video folder, frames)`` of an object: its clean videos, then its
        clutter videos, each in sorted order; what is not such a video is left out."""
        for other in _subfolders(object_dir):
            if other.name not in VIDEO_TYPES:
                self._leave_out(other, "not clean/ or clutter/")
        for video_type in VIDEO_TYPES:
            type_dir = object_dir / video_type
            if not type_dir.is_dir():
                continue
            if _list_frames(type_dir):
                self._leave_out(type_dir, "frames outside a video folder")
            for video_dir in _subfolders(type_dir):
                frames = _list_frames(video_dir)
                if not frames:
                    self._leave_out(video_dir, "a video folder without frames")
                    continue
                yield video_type, video_dir, frames

    def _add_object(self, user: str, object_dir: Path) -> int | None:
        """Add the object as the next class with its videos, and return its class id;
        ``None`` (nothing added) when none of its videos has frames."""
        object_id = len(self.class_names)
        frames: list[str] = []
        types: list[str] = []
        by_type: dict[str, list[int]] = {t: [] for t in VIDEO_TYPES}
        for video_type, video_dir, paths in self._videos(object_dir):
            present = _object_present(self.annotations, video_dir.name, paths)
            video = OrbitVideo(
                len(self.videos),
                video_dir.name,
                object_id,
                video_type,
                len(frames),
                len(paths),
                present,
            )
            self.videos.append(video)
            by_type[video_type].append(video.video_id)
            frames.extend(paths)
            types.extend([video_type] * len(paths))
        if not frames:
            self._leave_out(object_dir, "an object without videos")
            return None
        self.class_names.append(f"{user}/{object_dir.name}")
        self.frames.append(frames)
        self.item_types.append(types)
        self.object_videos.append(by_type)
        return object_id


Mode = Literal["test", "train"]
ClipChoice = Literal["uniform", "random", "fixed"]
TargetFrames = Literal["all", "sampled"]
ProtocolName = Literal["lite-2021", "challenge-2022", "dec-2022"]

# ORBIT's reference sampler (microsoft/ORBIT-Dataset) draws training tasks with smaller
# video caps when a task has many objects, to bound memory: (context, target) videos.
TRAIN_VIDEO_CAPS = {"few_objects": (10, 8), "many_objects": (5, 4)}
MANY_OBJECTS = 6
CLEAN_CONTEXT_VIDEOS = 5


@dataclass(frozen=True)
class OrbitProtocol:
    """Every sampling and filtering choice of one version of the ORBIT benchmark's code
    (microsoft/ORBIT-Dataset); see :data:`ORBIT_PROTOCOLS` and docs/data.md.

    Videos are cut into clips of ``clip_length`` consecutive frames (the first
    ``frame_cap`` frames; the last clip padded with the last frame, and with
    ``extra_padding_clip`` a video whose length is a multiple of ``clip_length`` gets one
    more clip of its last frame, as ORBIT's code did before December 2022). A clip's
    feature is the mean of its frames' features. Clips of a video are chosen by a
    :data:`ClipChoice`: ``uniform`` every ``context_clip_stride``-th clip up to a cap,
    ``random`` a random number (1..cap) of random clips, ``fixed`` exactly that many random
    clips (short videos first get random frames repeated, as in ORBIT's 2021 code).

    Test tasks: context clips by ``context_clips`` (cap or count ``max_context_clips``);
    targets ``all`` frames of each target video, each predicted from the clip of itself and
    its ``clip_length - 1`` predecessors (the video's first frame repeating before it;
    ``score_padding_frames`` scores the padding frames too, as the 2021 code did), or
    ``sampled``: ``max_target_clips`` random frames. ``filter_target_frames`` keeps only
    test target frames annotated ``object_not_present_issue: false``; a target video needs
    ``min_target_frames`` frames (after filtering), in test and training tasks. At most
    ``max_videos`` videos of each kind per object and ``max_test_way`` objects (``None``:
    all the user's).
    ``same_targets_per_user``: a user's test tasks share the first task's target videos.

    Training tasks: way uniform in ``2..min(objects, max_way)``, a random number of
    context and target videos (``train_video_caps``: at most 10 and 8, 5 and 4 with 6 or
    more objects; else ``max_videos``), clips by ``train_context_clips`` /
    ``train_target_clips`` with cap or count ``train_max_clips``.
    """

    clip_length: int
    frame_cap: int
    extra_padding_clip: bool
    context_clips: ClipChoice
    max_context_clips: int
    context_clip_stride: int
    target_frames: TargetFrames
    max_target_clips: int
    score_padding_frames: bool
    filter_target_frames: bool
    min_target_frames: int
    max_videos: int
    max_test_way: int | None
    same_targets_per_user: bool
    max_way: int
    train_context_clips: ClipChoice
    train_target_clips: ClipChoice
    train_max_clips: int
    train_video_caps: bool


#: The published versions of ORBIT's protocol, as its code runs them (docs/data.md,
#: "Fidelity: ORBIT"). ``lite-2021``: the code of the ORBIT (ICCV 2021) and LITE (NeurIPS
#: 2021) papers (commit 01b7448, Sep 2021; the same since dc25dae, Jul 2021).
#: ``challenge-2022``: the code of the 2022 ORBIT challenge (5a2b4e8, Apr 2022).
#: ``dec-2022``: the protocol ORBIT's README gives since December 2022, as its code and
#: challenge notebook run it (97ccae1, 2024).
ORBIT_PROTOCOLS: dict[str, OrbitProtocol] = {
    "lite-2021": OrbitProtocol(
        clip_length=8,
        frame_cap=1000,
        extra_padding_clip=True,
        context_clips="fixed",
        max_context_clips=8,
        context_clip_stride=30,
        target_frames="all",
        max_target_clips=200,
        score_padding_frames=True,
        filter_target_frames=False,
        min_target_frames=1,
        max_videos=15,
        max_test_way=None,
        same_targets_per_user=True,
        max_way=15,
        train_context_clips="fixed",
        train_target_clips="fixed",
        train_max_clips=4,
        train_video_caps=False,
    ),
    "challenge-2022": OrbitProtocol(
        clip_length=8,
        frame_cap=1000,
        extra_padding_clip=True,
        context_clips="random",
        max_context_clips=10,
        context_clip_stride=30,
        target_frames="all",
        max_target_clips=200,
        score_padding_frames=False,
        filter_target_frames=False,
        min_target_frames=1,
        max_videos=15,
        max_test_way=None,
        same_targets_per_user=True,
        max_way=15,
        train_context_clips="random",
        train_target_clips="random",
        train_max_clips=10,
        train_video_caps=False,
    ),
    "dec-2022": OrbitProtocol(
        clip_length=1,
        frame_cap=1000,
        extra_padding_clip=False,
        context_clips="uniform",
        max_context_clips=200,
        context_clip_stride=30,
        target_frames="sampled",
        max_target_clips=200,
        score_padding_frames=False,
        filter_target_frames=True,
        min_target_frames=50,
        max_videos=15,
        max_test_way=15,
        same_targets_per_user=False,
        max_way=15,
        train_context_clips="uniform",
        train_target_clips="random",
        train_max_clips=200,
        train_video_caps=False,
    ),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "target": ("clean", "clutter"),
    "mode": ("test", "train"),
    "context_clips": ("uniform", "random", "fixed"),
    "train_context_clips": ("uniform", "random", "fixed"),
    "train_target_clips": ("uniform", "random", "fixed"),
    "target_frames": ("all", "sampled"),
}
_POSITIVE = (
    "clip_length",
    "frame_cap",
    "max_context_clips",
    "context_clip_stride",
    "max_target_clips",
    "min_target_frames",
    "max_videos",
    "max_test_way",
    "max_way",
    "train_max_clips",
)


@dataclass(frozen=True)
class OrbitTaskSampler:
    """User-centric ORBIT tasks (Massiceti et al., ICCV 2021) under one version of the
    benchmark's protocol.

    ``protocol`` names an :class:`OrbitProtocol` in :data:`ORBIT_PROTOCOLS`; every other
    setting left ``None`` takes that protocol's value, and one that is set overrides it
    (``resolved`` holds the result). ``target='clutter'`` is CLU-VE: context from the
    object's clean videos, targets from its clutter videos. ``'clean'`` is CLE-VE: the
    first ``min(5, n - 1)`` clean videos in sorted order are the context and the rest the
    targets. An object without a context video or an eligible target video is left out of
    the user's tasks. ``mode`` is ``'test'`` (the evaluation protocol) or ``'train'``.
    """

    protocol: ProtocolName = "dec-2022"
    target: Literal["clean", "clutter"] = "clutter"
    mode: Mode = field(default="test", metadata=RUNTIME)  # chosen per split
    clip_length: int | None = None
    frame_cap: int | None = None
    extra_padding_clip: bool | None = None
    context_clips: ClipChoice | None = None
    max_context_clips: int | None = None
    context_clip_stride: int | None = None
    target_frames: TargetFrames | None = None
    max_target_clips: int | None = None
    score_padding_frames: bool | None = None
    filter_target_frames: bool | None = None
    min_target_frames: int | None = None
    max_videos: int | None = None
    max_test_way: int | None = None
    same_targets_per_user: bool | None = None
    max_way: int | None = None
    train_context_clips: ClipChoice | None = None
    train_target_clips: ClipChoice | None = None
    train_max_clips: int | None = None
    train_video_caps: bool | None = None
    resolved: OrbitProtocol = field(init=False, repr=False, compare=False, metadata=RUNTIME)

    def __post_init__(self) -> None:
        if self.protocol not in ORBIT_PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {sorted(ORBIT_PROTOCOLS)}, got {self.protocol!r}"
            )
        base = ORBIT_PROTOCOLS[self.protocol]
        chosen = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(OrbitProtocol)
            if getattr(self, f.name) is not None
        }
        # max_test_way None means "all objects": it is set by naming 0.
        if chosen.get("max_test_way") == 0:
            chosen["max_test_way"] = None
        resolved = dataclasses.replace(base, **chosen)
        self._check(resolved)
        object.__setattr__(self, "resolved", resolved)

    def _check(self, resolved: OrbitProtocol) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self if name in ("target", "mode") else resolved, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in _POSITIVE:
            value = getattr(resolved, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    def _valid_target_items(self, video: OrbitVideo) -> np.ndarray:
        """The target video's frames, filtered by annotation in test tasks only (ORBIT's
        ``--train_filter_target`` is empty by default)."""
        if self.mode == "train" or not self.resolved.filter_target_frames:
            return video.items()
        if video.object_present is None:
            raise ValueError(
                f"ORBIT target video {video.name} has no annotation file, and protocol "
                f"{self.protocol!r} keeps only target frames annotated "
                "object_not_present_issue: false; add annotations/<split>/"
                f"{video.name}.json or set data.orbit.filter_target_frames: false"
            )
        return video.items()[video.object_present]

    def object_videos(
        self, index: OrbitIndex, object_id: int
    ) -> tuple[list[OrbitVideo], list[OrbitVideo]]:
        """The object's candidate context videos and its eligible target videos."""
        by_type = index.object_videos[object_id]
        clean = sorted((index.videos[v] for v in by_type["clean"]), key=lambda v: v.name)
        if self.target == "clean":
            split = max(min(CLEAN_CONTEXT_VIDEOS, len(clean) - 1), 0)
            context, targets = clean[:split], clean[split:]
        else:
            context = clean
            targets = sorted((index.videos[v] for v in by_type["clutter"]), key=lambda v: v.name)
        least = self.resolved.min_target_frames
        eligible = [v for v in targets if len(self._valid_target_items(v)) >= least]
        return context, eligible

    def objects(self, index: OrbitIndex, user: int) -> list[int]:
        """The user's objects with at least one context and one eligible target video."""
        return [
            object_id
            for object_id in index.user_objects[user]
            if all(self.object_videos(index, object_id))
        ]

    def _padded(self, items: np.ndarray) -> np.ndarray:
        """``items`` capped at ``frame_cap`` and padded with the last to whole clips."""
        p = self.resolved
        items = items[: p.frame_cap]
        spare = len(items) % p.clip_length
        padding = p.clip_length - spare if spare or p.extra_padding_clip else 0
        return np.concatenate([items, np.repeat(items[-1:], padding)])

    def _choose_clips(
        self, items: np.ndarray, choice: str, cap: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Clips ``[n, clip_length]`` of ``items`` (one video's frames) by ``choice``."""
        length = self.resolved.clip_length
        frames = self._padded(items)
        if choice == "fixed" and len(frames) < cap * length:
            # ORBIT's 2021 code fills a short video with random frames (without replacement
            # where it can), keeping frame order, so that it has ``cap`` clips.
            missing = cap * length - len(frames)
            extra = rng.choice(items, size=missing, replace=missing > len(items))
            frames = np.sort(np.concatenate([frames, extra]))
        grid = frames.reshape(-1, length)
        if choice == "uniform":
            return grid[:: self.resolved.context_clip_stride][:cap]
        take = min(len(grid), cap)
        if choice == "random":
            take = int(rng.integers(1, take + 1))
        return grid[np.sort(rng.choice(len(grid), size=take, replace=False))]

    def _target_clips(self, video: OrbitVideo, rng: np.random.Generator) -> np.ndarray:
        """A test target video's clips: per predicted frame, its window of ``clip_length``
        frames ending at it."""
        p = self.resolved
        items = self._valid_target_items(video)
        if p.target_frames == "all":
            frames = self._padded(items)
            scored = len(frames) if p.score_padding_frames else min(len(items), p.frame_cap)
        else:
            frames = items[: p.frame_cap]
            take = min(len(frames), p.max_target_clips)
            chosen = np.sort(rng.choice(len(frames), size=take, replace=False))
            return frames[np.maximum(chosen[:, None] + np.arange(1 - p.clip_length, 1), 0)]
        ends = np.arange(scored)
        return frames[np.maximum(ends[:, None] + np.arange(1 - p.clip_length, 1), 0)]

    def _choose_videos(
        self, videos: list[OrbitVideo], cap: int, rng: np.random.Generator
    ) -> list[OrbitVideo]:
        most = min(len(videos), cap)
        take = int(rng.integers(1, most + 1)) if self.mode == "train" else most
        return [videos[i] for i in np.sort(rng.choice(len(videos), size=take, replace=False))]

    def _task_objects(self, objects: list[int], rng: np.random.Generator) -> list[int]:
        """The task's objects: a random way for training, up to ``max_test_way`` for tests."""
        p = self.resolved
        if self.mode == "train":
            top = min(len(objects), p.max_way)
            way = int(rng.integers(min(2, top), top + 1))
        elif p.max_test_way is not None and len(objects) > p.max_test_way:
            way = p.max_test_way
        else:
            return objects
        return sorted(rng.choice(objects, size=way, replace=False).tolist())

    def sample(
        self,
        index: OrbitIndex,
        user: int,
        rng: np.random.Generator,
        target_rng: np.random.Generator | None = None,
    ) -> EpisodeSpec:
        """One task of ``user``; ``target_rng`` (default ``rng``) draws the target videos
        and frames, so that tasks given the same one share their targets."""
        objects = self.objects(index, user)
        if not objects:
            raise ValueError(
                f"ORBIT user {index.users[user]} has no object with both a context video and a "
                f"{self.target} target video of at least {self.resolved.min_target_frames} "
                "valid frames"
            )
        p = self.resolved
        target_rng = rng if target_rng is None else target_rng
        objects = self._task_objects(objects, rng)
        caps = (p.max_videos, p.max_videos)
        if self.mode == "train" and p.train_video_caps:
            many = len(objects) >= MANY_OBJECTS
            caps = TRAIN_VIDEO_CAPS["many_objects" if many else "few_objects"]
        support, query = _ClipSet(), _ClipSet()
        for label, object_id in enumerate(objects):
            context, targets = self.object_videos(index, object_id)
            for video in self._choose_videos(context, caps[0], rng):
                if self.mode == "train":
                    choice, cap = p.train_context_clips, p.train_max_clips
                else:
                    choice, cap = p.context_clips, p.max_context_clips
                for clip in self._choose_clips(video.items(), choice, cap, rng):
                    support.add(label, clip)
            for video in self._choose_videos(targets, caps[1], target_rng):
                if self.mode == "train":
                    items = self._valid_target_items(video)
                    clips = self._choose_clips(items, p.train_target_clips, p.train_max_clips, rng)
                else:
                    clips = self._target_clips(video, target_rng)
                for clip in clips:
                    query.add(label, clip, video.video_id)
        return EpisodeSpec(
            tuple(objects),
            tuple(support.pairs),
            tuple(query.pairs),
            tuple(query.groups),
            support_clips=support.clips(),
            query_clips=query.clips(),
        )


class _ClipSet:
    """One side of a task as distinct ``(label, item)`` pairs and clips of their positions."""

    def __init__(self) -> None:
        self.pairs: list[tuple[int, int]] = []
        self.groups: list[int] = []
        self.rows: list[tuple[int, ...]] = []
        self._position: dict[tuple[int, int], int] = {}

    def add(self, label: int, items: np.ndarray, group: int = -1) -> None:
        row = []
        for item in items.tolist():
            key = (label, int(item))
            if key not in self._position:
                self._position[key] = len(self.pairs)
                self.pairs.append(key)
                self.groups.append(group)
            row.append(self._position[key])
        self.rows.append(tuple(row))

    def clips(self) -> tuple[tuple[int, ...], ...] | None:
        """The clips, or ``None`` when each is one image, each image once, in order."""
        if all(row == (i,) for i, row in enumerate(self.rows)):
            return None
        return tuple(self.rows)


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
