"""One task's share of a meta-training step with LITE (Bronskill et al., "Memory Efficient
Meta-Learning with Large Images", NeurIPS 2021).

The learner adapts to the support set through LITE (only ``h`` support images are
back-propagated, with an unbiased estimate of the full gradient), then classifies the
queries in batches: the query loss is a plain sum, so each batch is back-propagated on its
own through the retained support graph, and memory does not grow with the number of queries.
The outcome is left on the device (:class:`PendingOutcome`) so that a step's tasks are all
queued before any number is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from litemeta.learners.base import FewShotLearner, TaskClassifier
from litemeta.lite import DeferredBackward, FirstPasses, LitePass, LiteSettings
from litemeta.lite.deferred import DeferredRows
from litemeta.precision import Precision, at_least_float32, autocast
from litemeta.tasks import Task
from litemeta.training.objective import Objective, negative_entropy_sum, resolve_objective

__all__ = [
    "PendingOutcome",
    "TaskOutcome",
    "TaskStep",
    "TrainingDiverged",
    "backward_task",
    "queue_backward_task",
]


class TrainingDiverged(RuntimeError):
    """Meta-training produced a non-finite loss or features: the parameters have diverged."""


@dataclass(frozen=True)
class TaskOutcome:
    """Loss (cross-entropy averaged over queries, plus the regulariser) and counts of a task."""

    loss: float
    correct: int
    queries: int
    images: int


@dataclass
class PendingOutcome:
    """A task's outcome while the device may still be computing it; :meth:`read` waits.

    Reading a number from a GPU waits for all the work queued before it, so the trainer
    queues every task of a step and reads their outcomes once, at the end.
    """

    loss: torch.Tensor
    correct: torch.Tensor
    queries: int
    images: int
    deferred: DeferredBackward | None = None

    def read(self) -> TaskOutcome:
        """The outcome as numbers; :class:`TrainingDiverged` if the loss is not finite,
        :class:`~litemeta.lite.RowCouplingError` if LITE's recomputed support rows
        disagreed with their first pass."""
        values = [self.loss.double(), self.correct.double()]
        excess = self.deferred.row_excess() if self.deferred is not None else None
        if excess is not None:
            values.append(excess.double())
        numbers = torch.stack(values).tolist()
        if not math.isfinite(numbers[0]):
            raise TrainingDiverged(f"a task's loss is {numbers[0]}")
        if excess is not None and not numbers[2] <= 1:
            self.deferred.check_rows()  # type: ignore[union-attr]
        return TaskOutcome(numbers[0], int(numbers[1]), self.queries, self.images)


@dataclass(frozen=True)
class _Batch:
    """One query batch of a task: its bounds, and where it stands in the task."""

    start: int
    end: int
    last_of_adaptation: bool
    last_of_task: bool


@dataclass(frozen=True)
class TaskStep:
    """How every task of a run is back-propagated: LITE's settings with the flags of their
    objective filled in (:func:`~litemeta.training.objective.resolve_objective`, once, by
    :meth:`of`), the query batch size, the tasks per optimiser step and the precision.

    With the default objective (``lite.objective: unbiased``) the learner adapts once; each
    batch of ``query_batch_size`` queries adds ``sum(cross_entropy) / n_query /
    tasks_per_step`` and is back-propagated straight away, keeping the support graph
    (``retain_graph``) for the next batch; the classifier's regulariser is added once, with
    the last batch. The gradient equals that of the whole query set in one batch. The
    reference code's objectives adapt again for every query batch and weigh the batches
    their way (:mod:`litemeta.training.objective`). With LITE (``lite.h`` set) the drawn
    support rows are recomputed and back-propagated after the queries of their adaptation
    (:class:`~litemeta.lite.DeferredBackward`), so their activations and a query batch's are
    never held at the same time; with ``lite.rows_with_queries`` the backbone's rows ride in
    the last query batch's pass.

    With ``open_set_weight`` and a task's ``unknown_images`` (open-set meta-training,
    PEELER: Liu et al., CVPR 2020), those images are classified first, in batches through
    the same adaptation, each adding ``open_set_weight * negative_entropy_sum / n_unknown /
    tasks_per_step`` (:func:`~litemeta.training.objective.negative_entropy_sum`); they are
    queries, so LITE's support path is unchanged. A weight of 0 ignores them.
    """

    lite: LiteSettings
    objective: Objective
    query_batch_size: int
    tasks_per_step: int = 1
    precision: Precision = "fp32"
    open_set_weight: float = 0.0

    @classmethod
    def of(
        cls,
        lite: LiteSettings,
        *,
        query_batch_size: int,
        tasks_per_step: int = 1,
        precision: Precision = "fp32",
        open_set_weight: float = 0.0,
    ) -> TaskStep:
        """The step for ``lite``'s objective; :class:`~litemeta.config.ConfigError` for flags
        that contradict it."""
        objective, resolved = resolve_objective(lite)
        return cls(
            resolved, objective, query_batch_size, tasks_per_step, precision, open_set_weight
        )

    def queue(
        self,
        learner: FewShotLearner,
        task: Task,
        generator: torch.Generator | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> PendingOutcome:
        """Add ``task``'s share of the step's gradient to ``.grad``, LITE's draws from
        ``generator``, without waiting for the device to finish (see
        :class:`PendingOutcome`)."""
        lite, objective = self.lite, self.objective
        device = task.support_images.device
        deferred = DeferredBackward() if lite.h is not None else None
        redraw = lite.h is not None and objective.redraw_per_query_batch
        first_passes = FirstPasses() if redraw else None
        n_query = task.query_output_labels.numel()
        adaptations = objective.adaptations(objective.query_batches(n_query, self.query_batch_size))
        generators = objective.adaptation_generators(generator, len(adaptations))
        unknown = task.unknown_images if self.open_set_weight else None
        if unknown is not None and len(adaptations) > 1:
            raise ValueError(
                f"unknown images need one adaptation per task; objective {objective.name!r} "
                "adapts for every query batch"
            )
        # Summed on the device and read once: reading per batch would stall the GPU's queue.
        totals = (torch.zeros((), device=device), torch.zeros((), dtype=torch.int64, device=device))
        for adaptation, (bounds, draws) in enumerate(zip(adaptations, generators, strict=True)):
            if first_passes is not None:
                first_passes.rewind()
            lite_pass = LitePass(lite, draws, deferred, first_passes)
            with autocast(device, self.precision):
                classifier = learner.adapt(
                    task.support_images,
                    task.support_labels,
                    lite=lite_pass,
                    support_clips=task.support_clips,
                )
            rows = self._rows_to_fuse(classifier, task, deferred)
            if unknown is not None and unknown.shape[0]:
                self._back_propagate_unknown(classifier, unknown, totals, scaler)
            for position, (start, end) in enumerate(bounds):
                last = position == len(bounds) - 1
                batch = _Batch(start, end, last, last and adaptation == len(adaptations) - 1)
                self._back_propagate(
                    classifier, task, batch, totals, deferred, rows if last else None, scaler
                )
            if deferred is not None:
                with autocast(device, self.precision):
                    deferred.backward()
        images = task.support_labels.numel() + task.query_labels.numel()
        images += 0 if unknown is None else unknown.shape[0]
        return PendingOutcome(totals[0], totals[1], n_query, images, deferred)

    def _rows_to_fuse(
        self, classifier: TaskClassifier, task: Task, deferred: DeferredBackward | None
    ) -> DeferredRows | None:
        """The backbone's drawn rows, taken from ``deferred`` to ride in the last query
        batch's pass (``lite.rows_with_queries``, support and queries of one kind)."""
        support, query = task.support_images, task.query_images
        same_kind = support.dtype == query.dtype and support.shape[1:] == query.shape[1:]
        if deferred is None or not self.lite.rows_with_queries or not same_kind:
            return None
        return deferred.take(classifier.embed)

    def _back_propagate_unknown(
        self,
        classifier: TaskClassifier,
        unknown: torch.Tensor,
        totals: tuple[torch.Tensor, torch.Tensor],
        scaler: torch.amp.GradScaler | None,
    ) -> None:
        """Back-propagate the open-set term of the ``unknown`` images, batch by batch, keeping
        the adaptation's graph for the known queries that follow; add it to ``totals[0]``."""
        for start in range(0, unknown.shape[0], self.query_batch_size):
            images = unknown[start : start + self.query_batch_size]
            with autocast(images.device, self.precision):
                logits = classifier(images, None)
            term = negative_entropy_sum(at_least_float32(logits))
            term = term * (self.open_set_weight / unknown.shape[0])
            loss = term / self.tasks_per_step
            (scaler.scale(loss) if scaler is not None else loss).backward(retain_graph=True)
            totals[0].add_(term.detach())

    def _back_propagate(
        self,
        classifier: TaskClassifier,
        task: Task,
        batch: _Batch,
        totals: tuple[torch.Tensor, torch.Tensor],
        deferred: DeferredBackward | None,
        rows: DeferredRows | None,
        scaler: torch.amp.GradScaler | None,
    ) -> None:
        """Back-propagate one query batch (with ``rows``: the drawn rows in its pass) and add
        its loss and correct answers to ``totals``."""
        images, clips, labels = task.query_batch(batch.start, batch.end)
        with autocast(images.device, self.precision):
            if rows is None:
                logits = classifier(images, clips)
            else:  # [rows; queries] in one pass; the queries' features become a leaf
                embedded = classifier.embed(torch.cat([rows.inputs, images]))
                query_features = embedded[rows.inputs.shape[0] :].detach().requires_grad_()
                logits = classifier.classify(query_features, clips)
        cross_entropy = F.cross_entropy(at_least_float32(logits), labels, reduction="sum")
        n_query = task.query_output_labels.numel()
        carries = self.objective.carries_regularizer(batch.last_of_task)
        loss = self.objective.batch_loss(
            cross_entropy,
            classifier.regularizer if carries else None,
            batch_queries=batch.end - batch.start,
            task_queries=n_query,
            support_size=task.support_labels.numel(),
            h=self.lite.h,  # type: ignore[arg-type]
            tasks_per_step=self.tasks_per_step,
        )
        keep_graph = not batch.last_of_adaptation or (deferred is not None and deferred.waiting)
        (scaler.scale(loss) if scaler is not None else loss).backward(retain_graph=keep_graph)
        totals[0].add_(cross_entropy.detach() / n_query)
        if batch.last_of_task:
            totals[0].add_(classifier.regularizer.detach())
        totals[1].add_((logits.detach().argmax(dim=-1) == labels).sum())
        del logits, cross_entropy, loss  # this batch's graph, before the rows' backward
        if rows is not None:
            # Every query batch has reached the head: the rows' gradient is complete.
            recomputed = embedded[: rows.inputs.shape[0]]
            row_gradient = deferred.row_gradient(rows, recomputed)  # type: ignore[union-attr]
            gradient = torch.cat([row_gradient, query_features.grad.to(embedded.dtype)])
            embedded.backward(gradient, retain_graph=deferred.waiting)  # type: ignore[union-attr]


def queue_backward_task(
    learner: FewShotLearner,
    task: Task,
    *,
    lite: LiteSettings,
    generator: torch.Generator | None = None,
    query_batch_size: int,
    tasks_per_step: int = 1,
    precision: Precision = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    open_set_weight: float = 0.0,
) -> PendingOutcome:
    """:meth:`TaskStep.queue` of one task: add its share of the step's gradient to
    ``.grad`` (LITE's draws from ``generator``) without waiting for the device."""
    step = TaskStep.of(
        lite,
        query_batch_size=query_batch_size,
        tasks_per_step=tasks_per_step,
        precision=precision,
        open_set_weight=open_set_weight,
    )
    return step.queue(learner, task, generator, scaler)


def backward_task(
    learner: FewShotLearner,
    task: Task,
    *,
    lite: LiteSettings,
    generator: torch.Generator | None = None,
    query_batch_size: int,
    tasks_per_step: int = 1,
    precision: Precision = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> TaskOutcome:
    """:func:`queue_backward_task`, then wait for its outcome."""
    return queue_backward_task(
        learner,
        task,
        lite=lite,
        generator=generator,
        query_batch_size=query_batch_size,
        tasks_per_step=tasks_per_step,
        precision=precision,
        scaler=scaler,
    ).read()
