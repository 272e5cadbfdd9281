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

  As ORBIT reports them, each metric is averaged over all of a user's target videos,
  pooled over that user's tasks, and the mean over users carries the 95% interval over
  users. The mean over all videos pooled and the mean over tasks (each task's video mean,
  with its interval over tasks: a per-task figure, not ORBIT's) are reported as well.

The functions take per-frame predictions in frame order. Every frame is classified on its
own, so a frame's prediction uses only that frame, never a later one: the metrics describe a
model that could run online on a live video.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from litemeta.data.loading import task_loader
from litemeta.learners.base import FewShotLearner
from litemeta.precision import Precision, autocast
from litemeta.tasks import Task

__all__ = [
    "ORBIT_METRICS",
    "EvaluationResult",
    "MeanCI",
    "OrbitSummary",
    "VideoScore",
    "evaluate",
    "frames_to_recognition",
    "markdown_table",
    "mean_with_ci",
    "plot_results",
    "predict_queries",
    "score_video",
    "score_videos",
    "summarise_orbit",
    "video_prediction",
    "write_report",
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
    """ORBIT metrics: each user's means (their videos pooled over their tasks), the mean over
    users with its 95% interval over users (ORBIT's figure), the mean over tasks (a per-task
    figure) and the mean over all videos pooled."""

    users: list[str]
    per_user: list[dict[str, float]]
    over_users: dict[str, MeanCI]
    over_tasks: dict[str, MeanCI]
    over_videos: dict[str, MeanCI]


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
    )


@dataclass(frozen=True)
class EvaluationResult:
    """Per-task query accuracies, their summary, and ORBIT metrics for tasks with videos."""

    task_accuracies: list[float]
    accuracy: MeanCI
    orbit: OrbitSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _task_user(users: Sequence[str] | None, number: int) -> str:
    if users is None:
        return f"task {number}"
    if number >= len(users):
        raise ValueError(f"users names {len(users)} tasks but there are more to evaluate")
    return users[number]


def predict_queries(classifier: Any, query_images: Tensor, batch_size: int) -> Tensor:
    """Predicted class of every query image, classifying ``batch_size`` images at a time."""
    return torch.cat([classifier(batch).argmax(dim=-1) for batch in query_images.split(batch_size)])


def evaluate(
    learner: FewShotLearner,
    tasks: Iterable[Task],
    *,
    query_batch_size: int = 256,
    precision: Precision = "fp32",
    device: torch.device | None = None,
    progress: bool = True,
    description: str = "evaluating",
    workers: int = 0,
    users: Sequence[str] | None = None,
) -> EvaluationResult:
    """Adapt ``learner`` to every task (LITE off, no gradients) and score its queries.

    The learner runs in eval mode (its previous mode is restored afterwards) on ``device``,
    by default the device of its parameters. Tasks that carry ``query_groups`` are also
    scored with the ORBIT video metrics, pooled per user: ``users`` names the user of each
    task (by default ``tasks.user_of(i)`` where the dataset has it, else each task is its own
    user). Learners that optimise during adaptation (fine-tuning) must enable gradients
    inside ``adapt`` themselves. A dataset (or list) of tasks is loaded by ``workers``
    processes ahead of the model.
    """
    if query_batch_size < 1:
        raise ValueError(f"query_batch_size must be positive, got {query_batch_size}")
    device = device or _device_of(learner)
    accuracies: list[float] = []
    videos_per_task: list[list[VideoScore]] = []
    video_task_users: list[str] = []
    total = len(tasks) if isinstance(tasks, Sized) else None
    user_of = getattr(tasks, "user_of", None)
    if users is None and user_of is not None and total is not None:
        users = [user_of(i) for i in range(total)]
    if total is not None and hasattr(tasks, "__getitem__"):
        tasks = task_loader(tasks, range(total), workers=workers, pin_memory=device.type == "cuda")
    with _eval_mode(learner), torch.no_grad(), autocast(device, precision):
        for number, task in enumerate(
            tqdm(tasks, total=total, desc=description, disable=not progress)
        ):
            on_device = task.to(device, non_blocking=True)
            classifier = learner.adapt(
                on_device.support_images, on_device.support_labels, lite=None
            )
            predictions = predict_queries(
                classifier, on_device.query_images, query_batch_size
            ).cpu()
            accuracies.append(float((predictions == task.query_labels.cpu()).double().mean()))
            if task.query_groups is not None:
                videos_per_task.append(
                    score_videos(predictions, task.query_labels, task.query_groups)
                )
                video_task_users.append(_task_user(users, number))
    if not accuracies:
        raise ValueError("no tasks to evaluate: the task iterable was empty")
    if users is not None and len(users) != len(accuracies):
        raise ValueError(f"users names {len(users)} tasks but {len(accuracies)} were evaluated")
    orbit = summarise_orbit(videos_per_task, video_task_users) if videos_per_task else None
    return EvaluationResult(accuracies, mean_with_ci(accuracies), orbit)


def _percent(summary: MeanCI) -> str:
    return f"{100 * summary.mean:.2f} ± {100 * summary.ci95:.2f}"


def markdown_table(results: Mapping[str, EvaluationResult]) -> str:
    """Accuracy per named result (e.g. per dataset) and, where present, the ORBIT metrics."""
    lines = [
        "| Dataset | Tasks | Accuracy (%) ± 95% CI |",
        "|---|---:|---:|",
        *(f"| {name} | {r.accuracy.n} | {_percent(r.accuracy)} |" for name, r in results.items()),
    ]
    orbit = {name: r.orbit for name, r in results.items() if r.orbit is not None}
    if orbit:
        header = " | ".join(f"{metric.replace('_', ' ')} (%)" for metric in ORBIT_METRICS)
        lines += ["", f"| Dataset | Averaged over | {header} |", "|---|---|---:|---:|---:|"]
        for name, summary in orbit.items():
            for label, stats in (
                ("users", summary.over_users),
                ("tasks (per task)", summary.over_tasks),
                ("videos", summary.over_videos),
            ):
                cells = " | ".join(_percent(stats[metric]) for metric in ORBIT_METRICS)
                n = stats[ORBIT_METRICS[0]].n
                lines.append(f"| {name} | {n} {label} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_results(results: Mapping[str, EvaluationResult], path: str | Path) -> Path:
    """Save a figure: mean accuracy per result with 95% CI whiskers, and per-task histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, (bars, histogram) = plt.subplots(1, 2, figsize=(10, 4))
    bars.bar(
        names,
        [100 * results[n].accuracy.mean for n in names],
        yerr=[100 * results[n].accuracy.ci95 for n in names],
        capsize=4,
    )
    bars.set_ylabel("accuracy (%)")
    bars.set_ylim(0, 100)
    bars.set_title("mean accuracy ± 95% CI")
    bars.tick_params(axis="x", labelrotation=30)
    for name in names:
        values = [100 * a for a in results[name].task_accuracies]
        histogram.hist(values, bins=20, range=(0, 100), alpha=0.6, label=name)
    histogram.set_xlabel("task accuracy (%)")
    histogram.set_ylabel("tasks")
    histogram.set_title("per-task accuracy")
    histogram.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(results: Mapping[str, EvaluationResult], directory: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``accuracy.png`` into ``directory``."""
    if not results:
        raise ValueError("no results to report")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "results.json",
        "markdown": directory / "results.md",
        "plot": directory / "accuracy.png",
    }
    serialisable = {name: result.to_dict() for name, result in results.items()}
    paths["json"].write_text(json.dumps(serialisable, indent=2) + "\n")
    paths["markdown"].write_text(markdown_table(results))
    plot_results(results, paths["plot"])
    return paths
