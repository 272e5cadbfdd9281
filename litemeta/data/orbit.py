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
metrics. This module reads the videos (:class:`OrbitDataset`);
:mod:`litemeta.data.orbit_sampler` draws tasks under one published version of the
benchmark's protocol and :mod:`litemeta.data.orbit_tasks` loads them.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from litemeta.data.base import ImageCollection
from litemeta.data.images import IMAGE_EXTENSIONS, check_decode_size, read_image_file

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
