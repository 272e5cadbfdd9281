"""The evaluation loop: adapt a learner to each test task (LITE off, no gradients), classify
its queries and score them (:mod:`litemeta.evaluation.metrics`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Sized
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from litemeta.data.loading import task_loader
from litemeta.evaluation.metrics import (
    EvaluationResult,
    VideoScore,
    mean_with_ci,
    score_videos,
    summarise_orbit,
    summarise_sources,
)
from litemeta.learners.base import FewShotLearner
from litemeta.precision import Precision, autocast
from litemeta.tasks import Task

__all__ = ["evaluate", "predict_queries"]


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


def predict_queries(classifier: Any, task: Task, batch_size: int) -> Tensor:
    """Predicted class of every query image (or query clip, for a task with
    ``query_clips``), classifying ``batch_size`` of them at a time."""
    return torch.cat(
        [
            classifier(images, clips).argmax(dim=-1)
            for images, clips, _ in task.query_batches(batch_size)
        ]
    )


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
    sources: Sequence[str] | None = None,
) -> EvaluationResult:
    """Adapt ``learner`` to every task (LITE off, no gradients) and score its queries.

    The learner runs in eval mode (its previous mode is restored afterwards) on ``device``,
    by default the device of its parameters. A task with clips (``Task.support_clips``,
    ``query_clips``) is classified clip by clip, from mean clip features, and scored per
    query clip. Tasks that carry ``query_groups`` are also
    scored with the ORBIT video metrics, pooled per user: ``users`` names the user of each
    task (by default ``tasks.user_of(i)`` where the dataset has it, else each task is its own
    user). Tasks of several sources are also scored per source, with the average over
    sources: ``sources`` names the source of each task (by default ``tasks.source_of(i)``
    where the dataset has it, as multi-source Meta-Dataset tasks do). Learners that
    optimise during adaptation (fine-tuning) must enable gradients inside ``adapt``
    themselves. A dataset (or list) of tasks is loaded by ``workers``
    processes ahead of the model. A task's ``query_misses`` count as wrong predictions.
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
    source_of = getattr(tasks, "source_of", None)
    if sources is None and source_of is not None and total is not None:
        sources = [source_of(i) for i in range(total)]
    loader = None
    if total is not None and hasattr(tasks, "__getitem__"):
        loader = task_loader(tasks, range(total), workers=workers, pin_memory=device.type == "cuda")
        tasks = loader
    with loader or nullcontext(), _eval_mode(learner), torch.no_grad(), autocast(device, precision):
        for number, task in enumerate(
            tqdm(tasks, total=total, desc=description, disable=not progress)
        ):
            on_device = task.to(device, non_blocking=True)
            classifier = learner.adapt(
                on_device.support_images,
                on_device.support_labels,
                lite=None,
                support_clips=on_device.support_clips,
            )
            predictions = predict_queries(classifier, on_device, query_batch_size).cpu()
            labels, groups = task.query_output_labels.cpu(), task.query_output_groups
            scored = len(predictions) + task.query_misses
            correct = int((predictions == labels).sum())
            accuracies.append(correct / scored if scored else float("nan"))
            if groups is not None:
                videos_per_task.append(score_videos(predictions, labels, groups))
                video_task_users.append(_task_user(users, number))
    if not accuracies:
        raise ValueError("no tasks to evaluate: the task iterable was empty")
    if users is not None and len(users) != len(accuracies):
        raise ValueError(f"users names {len(users)} tasks but {len(accuracies)} were evaluated")
    orbit = summarise_orbit(videos_per_task, video_task_users) if videos_per_task else None
    by_source = summarise_sources(accuracies, sources) if sources is not None else None
    return EvaluationResult(accuracies, mean_with_ci(accuracies), orbit, by_source)
