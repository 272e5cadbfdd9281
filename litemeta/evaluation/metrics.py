"""Evaluation metrics for few-shot classifiers.

* Accuracy over test tasks with a 95% confidence interval, ``1.96 * std / sqrt(n)`` with the
  population standard deviation, as reported by Meta-Dataset, LITE and ORBIT.
* The ORBIT video metrics (Massiceti et al., "ORBIT: A Real-World Few-Shot Dataset for
  Teachable Object Recognition", ICCV 2021), per query video:

  - frame accuracy: the fraction of the video's frames classified correctly;
  - frames-to-recognition (FTR): the number of frames before the first correct prediction,
    divided by the number of frames (0 when the first frame is right, 1 when no frame is);
  - video accuracy: 1 when the most frequent frame prediction is the video's label (ties go
    to the smallest class index).

  Averaged as ORBIT's code averages them (docs/data.md, "Fidelity: ORBIT"): per video, over
  every target video of every task (``over_videos``; the figure ORBIT's code selects models
  by and its challenges rank by); per user, the mean of the user's video scores pooled over
  the user's tasks (``over_users``, ORBIT's 2021 and 2022 code) or, for frame accuracy, all
  the user's frames pooled (``over_user_frames``, ORBIT's code since December 2022); and per
  task, each task's mean over its videos (``over_tasks``). Each carries its 95% interval
  over the units it averages.
* For tasks of several sources (Meta-Dataset's test sources), the accuracy of each source
  with its interval, and the average over sources.

The functions take per-frame predictions in frame order. A frame's prediction uses that frame
alone, or with clips (ORBIT's 2021 and 2022 protocols) the frames of its clip, which end at
it: never a later frame, so the metrics describe a model that could run online on a video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ORBIT_METRICS",
    "EvaluationResult",
    "MeanCI",
    "OrbitSummary",
    "SourceSummary",
    "VideoScore",
    "frames_to_recognition",
    "mean_with_ci",
    "score_video",
    "score_videos",
    "summarise_orbit",
    "summarise_sources",
    "video_prediction",
]

ORBIT_METRICS: tuple[str, ...] = ("frame_accuracy", "frames_to_recognition", "video_accuracy")


@dataclass(frozen=True)
class MeanCI:
    """A mean with the half-width of its 95% confidence interval over ``n`` values."""

    mean: float
    ci95: float
    n: int


def mean_with_ci(values: Sequence[float]) -> MeanCI:
    """Mean and 95% confidence half-width ``1.96 * std / sqrt(n)`` (population std)."""
    if len(values) == 0:
        raise ValueError("cannot summarise an empty list of scores")
    data = torch.tensor([float(v) for v in values], dtype=torch.float64)
    std = float(data.std(correction=0))
    return MeanCI(float(data.mean()), 1.96 * std / math.sqrt(len(values)), len(values))


@dataclass(frozen=True)
class VideoScore:
    """The ORBIT metrics of one query video."""

    frame_accuracy: float
    frames_to_recognition: float
    video_accuracy: float
    frames: int = 1


def _as_long(values: Tensor | Sequence[int]) -> Tensor:
    return torch.as_tensor(values, dtype=torch.int64).flatten().cpu()


def frames_to_recognition(frame_predictions: Tensor | Sequence[int], label: int) -> float:
    """Frames before the first correct prediction over the video length (1 if never right)."""
    predictions = _as_long(frame_predictions)
    correct = torch.nonzero(predictions == label).flatten()
    if correct.numel() == 0:
        return 1.0
    return int(correct[0]) / predictions.numel()


def video_prediction(frame_predictions: Tensor | Sequence[int]) -> int:
    """The most frequent frame prediction; ties go to the smallest class index."""
    return int(torch.bincount(_as_long(frame_predictions)).argmax())


def score_video(frame_predictions: Tensor | Sequence[int], label: int) -> VideoScore:
    """ORBIT metrics of one video from its per-frame predictions, in frame order."""
    predictions = _as_long(frame_predictions)
    if predictions.numel() == 0:
        raise ValueError("a video needs at least one frame prediction")
    return VideoScore(
        frame_accuracy=float((predictions == label).double().mean()),
        frames_to_recognition=frames_to_recognition(predictions, label),
        video_accuracy=float(video_prediction(predictions) == label),
        frames=predictions.numel(),
    )


def score_videos(predictions: Tensor, labels: Tensor, groups: Tensor) -> list[VideoScore]:
    """Score every video of one task; frames are grouped by ``groups`` (a video id per frame).

    Within a video the frames keep the order they have in ``predictions``, which must be
    frame order. Videos are returned in order of first appearance.
    """
    predictions, labels, groups = _as_long(predictions), _as_long(labels), _as_long(groups)
    if not predictions.shape == labels.shape == groups.shape:
        raise ValueError(
            "predictions, labels and groups need one entry per frame: shapes "
            f"{tuple(predictions.shape)}, {tuple(labels.shape)}, {tuple(groups.shape)}"
        )
    video_ids, first_seen = [], set()
    for video in groups.tolist():
        if video not in first_seen:
            first_seen.add(video)
            video_ids.append(video)
    scores = []
    for video in video_ids:
        frames = groups == video
        video_labels = labels[frames].unique()
        if video_labels.numel() != 1:
            raise ValueError(
                f"video {video} has frames with different labels {video_labels.tolist()}; "
                "every frame of a video must carry the video's label"
            )
        scores.append(score_video(predictions[frames], int(video_labels[0])))
    return scores


@dataclass(frozen=True)
class OrbitSummary:
    """ORBIT metrics: each user's means of their video scores (their videos pooled over their
    tasks); the mean over users of those (``over_users``); frame accuracy with each user's
    frames pooled, averaged over users (``over_user_frames``); the mean over tasks of each
    task's video mean (``over_tasks``); and the mean over all videos (``over_videos``)."""

    users: list[str]
    per_user: list[dict[str, float]]
    over_users: dict[str, MeanCI]
    over_tasks: dict[str, MeanCI]
    over_videos: dict[str, MeanCI]
    over_user_frames: MeanCI


def _video_means(videos: Sequence[VideoScore]) -> dict[str, float]:
    return {name: sum(getattr(v, name) for v in videos) / len(videos) for name in ORBIT_METRICS}


def summarise_orbit(
    videos_per_task: Sequence[Sequence[VideoScore]], users: Sequence[str] | None = None
) -> OrbitSummary:
    """ORBIT's aggregation (Massiceti et al., ICCV 2021): pool the videos of each user's tasks
    into one score per user, then average over users with a 95% interval over users.

    ``users`` names the user of each task (by default every task is its own user, named
    ``task <i>``). The per-task and per-video means are returned alongside.
    """
    if not videos_per_task or any(len(videos) == 0 for videos in videos_per_task):
        raise ValueError("every task needs at least one scored video")
    if users is None:
        users = [f"task {i}" for i in range(len(videos_per_task))]
    if len(users) != len(videos_per_task):
        raise ValueError(
            f"users names the user of each task: got {len(users)} users for "
            f"{len(videos_per_task)} tasks"
        )
    pooled: dict[str, list[VideoScore]] = {}
    for user, videos in zip(users, videos_per_task, strict=True):
        pooled.setdefault(user, []).extend(videos)
    per_user = [_video_means(videos) for videos in pooled.values()]
    user_frames = [
        sum(v.frame_accuracy * v.frames for v in videos) / sum(v.frames for v in videos)
        for videos in pooled.values()
    ]
    per_task = [_video_means(videos) for videos in videos_per_task]
    all_videos = [video for videos in videos_per_task for video in videos]
    return OrbitSummary(
        users=list(pooled),
        per_user=per_user,
        over_users={name: mean_with_ci([u[name] for u in per_user]) for name in ORBIT_METRICS},
        over_tasks={name: mean_with_ci([t[name] for t in per_task]) for name in ORBIT_METRICS},
        over_videos={
            name: mean_with_ci([getattr(v, name) for v in all_videos]) for name in ORBIT_METRICS
        },
        over_user_frames=mean_with_ci(user_frames),
    )


@dataclass(frozen=True)
class SourceSummary:
    """Accuracy per test source, each with its 95% interval over that source's tasks, and
    ``average``, the unweighted mean of the per-source means (Meta-Dataset's average
    over sources; it has no interval of its own)."""

    per_source: dict[str, MeanCI]
    average: float


def summarise_sources(task_accuracies: Sequence[float], sources: Sequence[str]) -> SourceSummary:
    """Group task accuracies by their source (``sources[i]`` is task ``i``'s), in order of
    first appearance, as Meta-Dataset and LITE report them: one mean and interval per
    source, each source counting once in the average whatever its number of tasks."""
    if len(sources) != len(task_accuracies):
        raise ValueError(
            f"sources names the source of each task: got {len(sources)} sources for "
            f"{len(task_accuracies)} tasks"
        )
    grouped: dict[str, list[float]] = {}
    for source, accuracy in zip(sources, task_accuracies, strict=True):
        grouped.setdefault(source, []).append(accuracy)
    per_source = {source: mean_with_ci(values) for source, values in grouped.items()}
    average = sum(summary.mean for summary in per_source.values()) / len(per_source)
    return SourceSummary(per_source, average)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-task query accuracies, their summary, ORBIT metrics for tasks with videos, and
    the accuracy per source for tasks of several sources."""

    task_accuracies: list[float]
    accuracy: MeanCI
    orbit: OrbitSummary | None = None
    sources: SourceSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
