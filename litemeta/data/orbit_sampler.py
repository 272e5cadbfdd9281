"""ORBIT's task sampler (Massiceti et al., ICCV 2021): which of a user's objects, videos,
clips and frames make one task, under a published version of the benchmark's protocol
(:data:`ORBIT_PROTOCOLS`, microsoft/ORBIT-Dataset); frame annotations only ever filter
target videos, never the context. The videos come from :mod:`litemeta.data.orbit`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from litemeta.config import RUNTIME
from litemeta.data.orbit import OrbitIndex, OrbitVideo
from litemeta.data.samplers import EpisodeSpec

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
