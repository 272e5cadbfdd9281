"""Choose LITE's h, the chunk size and the query batch size that fit a memory budget.

LITE (Bronskill et al., "Memory Efficient Meta-Learning with Large Images", NeurIPS 2021)
makes the memory of a meta-training step grow with h, the support images back-propagated,
instead of N, the support set's size. ``training.lite.h: auto`` picks the largest h whose
step fits ``training.memory_budget`` (GiB), from a cost measured on the model itself:

* **state**: the parameters and buffers, and for training the trainable parameters'
  gradients and Adam's two moments (counted from the tensors);
* **the task's images** on the device (uint8), open-set meta-training's unknown images
  included (they pass in query batches, like the queries);
* **saved for backward**: the bytes autograd keeps, counted exactly by
  :class:`~litemeta.training.saved_tensors.SavedTensorMeter` over a real LITE step
  (:func:`~litemeta.training.queue_backward_task`) with h, the chunk size and the query batch
  all k = 1 and then 2 images, on a task of the run's way and image size: the bytes are
  deterministic, so two sizes give a line, ``saved(k) = a + b k``;
* **working memory**: the largest layer's inputs plus outputs during the same steps (forward
  hooks on every leaf module), also a line in k. It stands for what the meter does not see:
  a layer's output before it is saved, the no-grad pass's activations, the gradients in
  flight during backward. Counting it on top of the saved bytes errs on the side of safety.

A step then holds ``images`` images with autograd at once: the h drawn images, recomputed in
one chunk (the plan sets the chunk size to h), or a query batch (at most h images), or, with
``lite.rows_with_queries``, both together. Its accounted peak is
``state + task images + a + a_w + (b + b_w) x images``.

Not counted: the framework's own memory (the CUDA context and cuDNN's workspaces on a GPU;
on the CPU the Python and torch baseline of about 0.8 GiB of resident memory) and the
allocator's caching and fragmentation. The default budget leaves a margin for them: 90% of
the free GPU memory, or 80% of the CPU's available memory (``MemAvailable``).

Evaluation's chunk size (``evaluation.chunk_size: auto``) is planned the same way without
autograd: the parameters, the task's images and the working memory of the images in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from litemeta.device import available_memory_bytes
from litemeta.learners.base import FewShotLearner
from litemeta.lite import LiteSettings
from litemeta.precision import Precision
from litemeta.tasks import Task
from litemeta.training.memory_cost import (
    PROBE_SIZES,
    ModelCost,
    WorkingMeter,
    learner_chunk_size,
    measure_cost,
    measure_inference_cost,
    task_image_bytes,
    tensor_bytes,
)
from litemeta.training.saved_tensors import SavedTensorMeter
from litemeta.training.settings import TrainingConfig
from litemeta.training.step import queue_backward_task
from litemeta.training.task_stream import TaskSource

__all__ = [
    "GIB",
    "BudgetTooSmall",
    "EvaluationPlan",
    "MemoryPlan",
    "PlanCheck",
    "budget_bytes",
    "check_plan",
    "first_task",
    "largest_fitting",
    "plan_evaluation",
    "plan_evaluation_run",
    "plan_run",
    "plan_training",
]

GIB = 2**30
#: Share of the free memory the default budget uses (the rest is the margin).
GPU_SHARE = 0.9
CPU_SHARE = 0.8


class BudgetTooSmall(ValueError):
    """The budget cannot hold a step with one image back-propagated."""


def budget_bytes(budget_gib: float | None, device: torch.device) -> tuple[int, str]:
    """The budget in bytes and where it came from: ``budget_gib`` if given, else
    :data:`GPU_SHARE` of the free GPU memory or :data:`CPU_SHARE` of ``MemAvailable``."""
    if budget_gib is not None:
        return int(budget_gib * GIB), f"training.memory_budget = {budget_gib:g} GiB"
    share = GPU_SHARE if device.type == "cuda" else CPU_SHARE
    free = available_memory_bytes(str(device))
    where = "free GPU memory" if device.type == "cuda" else "available memory (MemAvailable)"
    return int(free * share), f"{share:.0%} of the {free / GIB:.1f} GiB {where}"


def largest_fitting(fits: Callable[[int], bool], limit: int = 1 << 24) -> int:
    """The largest n in 1..limit with ``fits(n)`` (``fits`` monotone), or 0 if none."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen sizes, the step's accounted peak, and the budget they fit."""

    h: int
    chunk_size: int
    query_batch_size: int
    peak_bytes: float
    budget_bytes: int
    budget_source: str
    cost: ModelCost

    def describe(self) -> str:
        """One line: what was chosen and why."""
        cost, mib = self.cost, 2**20
        return (
            f"memory plan: lite.h={self.h}, chunk_size={self.chunk_size}, "
            f"query_batch_size={self.query_batch_size}: accounted peak "
            f"{self.peak_bytes / GIB:.2f} of {self.budget_bytes / GIB:.2f} GiB "
            f"({self.budget_source}); per image with autograd {cost.saved.slope / mib:.1f} MiB "
            f"saved + {cost.working.slope / mib:.1f} MiB working, fixed "
            f"{(cost.training_state_bytes + cost.saved.intercept) / mib:.0f} MiB "
            f"(parameters, gradients, Adam, the task's graph), {cost.precision}, "
            f"{cost.image_size} px, {cost.way}-way; one more image would not fit"
        )


def plan_training(
    cost: ModelCost,
    budget: int,
    *,
    query_batch_size: int,
    task_bytes: int = 0,
    rows_with_queries: bool = False,
    support_size: int | None = None,
    budget_source: str = "",
) -> MemoryPlan:
    """The largest h (the chunk size set to h, query batches of at most
    ``min(query_batch_size, h)``) whose accounted peak fits ``budget`` bytes; raises
    :class:`BudgetTooSmall`, naming the smallest budget that works, if h = 1 does not fit.

    A support set of at most h images is back-propagated whole, without LITE, and its graph
    is held with each query batch: with ``support_size`` (N) known, h = N is chosen only if
    N images and a query batch fit, else h stays below N."""

    def images(h: int) -> int:
        return h + min(query_batch_size, h) if rows_with_queries else h

    def peak(h: int) -> float:
        if support_size is not None and h >= support_size:  # full back-propagation
            return cost.training_peak(support_size + min(query_batch_size, h), task_bytes)
        return cost.training_peak(images(h), task_bytes)

    limit = 1 << 24 if support_size is None else support_size - 1
    h = largest_fitting(lambda h: peak(h) <= budget, limit) if limit >= 1 else 0
    if support_size is not None and peak(support_size) <= budget:
        h = support_size
    if h == 0:
        needed = peak(1)
        raise BudgetTooSmall(
            f"a memory budget of {budget / GIB:.2f} GiB ({budget_source or 'given'}) cannot "
            f"hold one LITE step with h = 1 ({cost.image_size} px, {cost.precision}): it needs "
            f"at least {math.ceil(needed / GIB * 100) / 100:.2f} GiB; raise "
            "training.memory_budget, or lower model.image_size"
        )
    return MemoryPlan(
        h=h,
        chunk_size=h,
        query_batch_size=min(query_batch_size, h),
        peak_bytes=peak(h),
        budget_bytes=budget,
        budget_source=budget_source,
        cost=cost,
    )


@dataclass(frozen=True)
class EvaluationPlan:
    """Evaluation's chunk size under a budget."""

    chunk_size: int
    peak_bytes: float
    budget_bytes: int
    budget_source: str

    def describe(self) -> str:
        return (
            f"evaluation plan: chunk_size={self.chunk_size}: accounted peak "
            f"{self.peak_bytes / GIB:.2f} of {self.budget_bytes / GIB:.2f} GiB "
            f"({self.budget_source}); one more image would not fit"
        )


def plan_evaluation(
    cost: ModelCost,
    budget: int,
    *,
    query_batch_size: int,
    task_bytes: int = 0,
    budget_source: str = "",
) -> EvaluationPlan:
    """The largest chunk whose pass without autograd fits ``budget``, with query batches of
    ``query_batch_size`` also fitting; raises :class:`BudgetTooSmall` otherwise."""
    chunk = largest_fitting(lambda n: cost.inference_peak(n, task_bytes) <= budget)
    if chunk < max(query_batch_size, 1):
        needed = cost.inference_peak(max(query_batch_size, 1), task_bytes)
        raise BudgetTooSmall(
            f"a memory budget of {budget / GIB:.2f} GiB ({budget_source or 'given'}) cannot "
            f"hold evaluation's query batches of {query_batch_size} images: it needs at least "
            f"{math.ceil(needed / GIB * 100) / 100:.2f} GiB; raise training.memory_budget or "
            "lower evaluation.query_batch_size"
        )
    return EvaluationPlan(
        chunk_size=chunk,
        peak_bytes=cost.inference_peak(chunk, task_bytes),
        budget_bytes=budget,
        budget_source=budget_source,
    )


def first_task(tasks: TaskSource) -> Task:
    """Task 0 of a task stream (a dataset, or a function of the index)."""
    return tasks[0] if hasattr(tasks, "__getitem__") else tasks(0)  # type: ignore[index,operator]


def plan_run(
    config: TrainingConfig,
    learner: FewShotLearner,
    task: Task,
) -> tuple[TrainingConfig, MemoryPlan]:
    """Resolve ``lite.h: auto`` for ``learner`` (on its device) and tasks like ``task`` (its
    way and image size are probed, its images counted): ``config`` with ``lite.h`` and
    ``query_batch_size`` planned, the learner's chunk size set, and the plan."""
    device = next(learner.parameters()).device
    budget, source = budget_bytes(config.memory_budget, device)
    cost = measure_cost(
        learner,
        image_size=int(task.support_images.shape[-1]),
        way=max(int(task.support_labels.max()) + 1, max(PROBE_SIZES)),
        lite=config.lite,
        precision=config.precision,
    )
    plan = plan_training(
        cost,
        budget,
        query_batch_size=config.query_batch_size,
        task_bytes=task_image_bytes(task),
        rows_with_queries=config.lite.rows_with_queries,
        support_size=int(task.support_labels.numel()),
        budget_source=source,
    )
    if hasattr(learner, "chunk_size"):
        learner.chunk_size = plan.chunk_size  # type: ignore[attr-defined]
    planned = replace(
        config, lite=replace(config.lite, h=plan.h), query_batch_size=plan.query_batch_size
    )
    return planned, plan


@dataclass(frozen=True)
class PlanCheck:
    """What a real step at a plan's sizes held (see :func:`check_plan`), in bytes."""

    state_bytes: int
    task_bytes: int
    saved_bytes: int
    working_bytes: int
    gpu_peak_bytes: int | None

    @property
    def accounted_bytes(self) -> int:
        """What the plan accounts for, measured: the state after an optimiser step, the
        task's images, the saved tensors' peak and the largest layer's inputs and outputs."""
        return self.state_bytes + self.task_bytes + self.saved_bytes + self.working_bytes


def check_plan(
    learner: FewShotLearner,
    plan: MemoryPlan,
    task: Task,
    *,
    lite: LiteSettings | None = None,
    precision: Precision = "auto",
    open_set_weight: float = 0.0,
) -> PlanCheck:
    """Run one meta-training step at ``plan``'s sizes on ``task`` (planned with its support
    size; with ``open_set_weight``, its unknown images' term too) and one Adam step,
    metered: the saved tensors (:class:`SavedTensorMeter`), the working memory (forward
    hooks), the state after the optimiser step and, on CUDA,
    ``torch.cuda.max_memory_allocated`` over both steps (from a reset, with the learner, its
    state and the task already on the device)."""
    device = task.support_images.device
    lite = replace(lite or LiteSettings(), h=plan.h)
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    meter = SavedTensorMeter(exclude=[*learner.parameters(), *learner.buffers()])
    hooks = WorkingMeter()
    learner.train()
    with learner_chunk_size(learner, plan.chunk_size), hooks.watching(learner), meter.watching():
        outcome = queue_backward_task(
            learner,
            task,
            lite=lite,
            generator=torch.Generator().manual_seed(0),
            query_batch_size=plan.query_batch_size,
            precision=precision,
            open_set_weight=open_set_weight,
        )
    outcome.read()
    optimizer.step()
    gpu_peak = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        gpu_peak = torch.cuda.max_memory_allocated(device)
    parameters = [*learner.parameters(), *learner.buffers()]
    gradients = [p.grad for p in learner.parameters() if p.grad is not None]
    moments = [v for state in optimizer.state.values() for v in state.values()]
    state = tensor_bytes(iter([*parameters, *gradients, *moments]))
    learner.zero_grad(set_to_none=True)
    return PlanCheck(
        state_bytes=state,
        task_bytes=task_image_bytes(task),
        saved_bytes=meter.peak_bytes,
        working_bytes=hooks.peak_bytes,
        gpu_peak_bytes=gpu_peak,
    )


def plan_evaluation_run(
    learner: FewShotLearner,
    task: Task,
    *,
    memory_budget: float | None,
    query_batch_size: int,
    precision: Precision = "auto",
) -> EvaluationPlan:
    """Resolve ``evaluation.chunk_size: auto`` for ``learner`` (on its device) and tasks like
    ``task``: the plan, with the learner's chunk size set to it."""
    device = next(learner.parameters()).device
    budget, source = budget_bytes(memory_budget, device)
    cost = measure_inference_cost(
        learner,
        image_size=int(task.support_images.shape[-1]),
        way=max(int(task.support_labels.max()) + 1, max(PROBE_SIZES)),
        precision=precision,
    )
    plan = plan_evaluation(
        cost,
        budget,
        query_batch_size=query_batch_size,
        task_bytes=task_image_bytes(task),
        budget_source=source,
    )
    learner.chunk_size = plan.chunk_size  # type: ignore[attr-defined]
    return plan
