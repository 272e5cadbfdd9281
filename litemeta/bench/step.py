"""One measured meta-training step: the unit of the memory and speed benchmarks.

A step is :func:`litemeta.training.queue_backward_task` on one task (support of N images, a
small query set) with a given way of back-propagating through the support set, or, as the
reference, an inference pass (adapt and classify without autograd). The modes follow the
comparison in Bronskill et al., "Memory Efficient Meta-Learning with Large Images",
NeurIPS 2021: full back-propagation, gradient checkpointing, and LITE with ``h`` images.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from litemeta.backbones import DEFAULT_BACKBONE
from litemeta.device import Stopwatch, place_on_device, synchronize
from litemeta.evaluation import predict_queries
from litemeta.learners import FewShotLearner, build_learner
from litemeta.learners.backbone_learner import DEFAULT_CHUNK_SIZE
from litemeta.lite import LiteSettings, check_h
from litemeta.precision import Precision, autocast
from litemeta.tasks import Task
from litemeta.training import PendingOutcome, queue_backward_task
from litemeta.training.saved_tensors import SavedTensorMeter

from .report import Row

__all__ = [
    "INFERENCE",
    "MODES",
    "StepConfig",
    "measure_step",
    "parse_mode",
    "prepare_step",
    "run_step",
    "synthetic_task",
]

INFERENCE = "inference"
#: The default modes: the reference, full back-propagation, checkpointing, LITE h = 8, 40.
MODES = (INFERENCE, "backprop", "checkpoint", "lite-8", "lite-40")


#: Suffix of a LITE mode whose drawn rows ride in the last query batch's pass.
FUSED = "-fused"


def parse_mode(mode: str) -> int | None:
    """Validate a mode name; return LITE's ``h`` for ``lite-<h>`` or ``lite-<h>-fused``
    (the rows recomputed in the last query batch's pass), else ``None``."""
    if mode in (INFERENCE, "backprop", "checkpoint"):
        return None
    prefix, _, h = mode.removesuffix(FUSED).partition("-")
    if prefix == "lite" and h.isdigit():
        try:
            check_h(int(h))
            return int(h)
        except ValueError:
            pass  # lite-0: not a mode
    raise ValueError(
        f"unknown mode '{mode}': use inference, backprop, checkpoint, lite-<h> (e.g. lite-8) "
        "or lite-<h>-fused"
    )


@dataclass(frozen=True)
class StepConfig:
    """What one benchmark configuration runs.

    The task is ``way``-way with ``support // way`` shots and ``queries_per_class``
    queries per class, of random images (memory and time do not depend on content).
    ``chunk_size`` (the learner's) bounds every pass over the support set.
    ``threads`` sets torch's intra-op threads (default: torch's own choice); one thread per
    process keeps timings stable on a CPU shared with other work. ``precision`` as in
    training (``auto``: bf16 autocast on a GPU, fp32 on the CPU).
    """

    learner: str
    image_size: int
    support: int
    mode: str
    way: int = 10
    queries_per_class: int = 2
    query_batch_size: int = 10
    chunk_size: int = DEFAULT_CHUNK_SIZE
    backbone: str = DEFAULT_BACKBONE
    pretrained: bool = True
    device: str = "cpu"
    threads: int | None = None
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        parse_mode(self.mode)
        if self.support < self.way or self.support % self.way:
            raise ValueError(
                f"support size {self.support} must be a positive multiple of way {self.way}"
            )

    def lite_settings(self) -> LiteSettings | None:
        """How the step maps the support set; ``None`` for the inference pass."""
        if self.mode == INFERENCE:
            return None
        return LiteSettings(
            h=parse_mode(self.mode),
            gradient_checkpointing=self.mode == "checkpoint",
            rows_with_queries=self.mode.endswith(FUSED),
        )


def synthetic_task(
    way: int, support: int, queries_per_class: int, image_size: int, seed: int = 0
) -> Task:
    """A ``way``-way task of random uint8 images with equal shots per class."""
    generator = torch.Generator().manual_seed(seed)

    def images(count: int) -> torch.Tensor:
        shape = (count, 3, image_size, image_size)
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)

    queries = way * queries_per_class
    return Task(
        support_images=images(support),
        support_labels=torch.arange(way).repeat_interleave(support // way),
        query_images=images(queries),
        query_labels=torch.arange(way).repeat_interleave(queries_per_class),
        class_names=[f"class {c}" for c in range(way)],
    )


def run_step(learner: FewShotLearner, task: Task, config: StepConfig) -> PendingOutcome | None:
    """Queue one step on the device; the LITE step's outcome is left unread."""
    lite = config.lite_settings()
    device = task.support_images.device
    if lite is None:
        with torch.no_grad(), autocast(device, config.precision):
            classifier = learner.adapt(task.support_images, task.support_labels)
            predict_queries(classifier, task, config.query_batch_size)
        return None
    outcome = queue_backward_task(
        learner,
        task,
        lite=lite,
        generator=torch.Generator().manual_seed(0),
        query_batch_size=config.query_batch_size,
        precision=config.precision,
    )
    learner.zero_grad(set_to_none=True)
    return outcome


def prepare_step(step: StepConfig) -> tuple[FewShotLearner, Task]:
    """The learner (on the step's device, in eval mode) and the synthetic task of ``step``;
    sets torch's threads as ``step`` says."""
    if step.threads is not None:
        torch.set_num_threads(step.threads)
    device = torch.device(step.device)
    learner = build_learner(
        step.learner,
        step.backbone,
        step.image_size,
        pretrained=step.pretrained,
        chunk_size=step.chunk_size,
    )
    learner = place_on_device(learner, device).eval()
    task = synthetic_task(step.way, step.support, step.queries_per_class, step.image_size)
    return learner, task.to(device)


def measure_step(config: dict, repeats: int = 0) -> Row:
    """Run one step of ``config`` (a :class:`StepConfig` as a dict) and measure it.

    Returns ``saved_bytes`` (peak bytes autograd held for backward, see
    :class:`SavedTensorMeter`) and, on CUDA, ``peak_gpu_bytes``
    (``torch.cuda.max_memory_allocated`` of a step after a warm-up one, so that one-time
    allocations such as cuDNN's autotuning workspaces are not counted). With ``repeats`` > 0
    ``seconds`` is the median of ``repeats`` further, unhooked steps after a warm-up, and
    ``host_seconds`` the median time until the step's Python code returned, before waiting
    for the device: on a GPU, a value close to ``seconds`` means the step is bound by the
    host launching kernels, not by the GPU computing them.
    """
    step = StepConfig(**config)
    learner, task = prepare_step(step)
    device = task.support_images.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # shapes repeat from step to step
        run_step(learner, task, step)
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    meter = SavedTensorMeter(exclude=[*learner.parameters(), *learner.buffers()])
    with meter.watching():
        outcome = run_step(learner, task, step)
    if outcome is not None:
        outcome.read()  # refuses rows that disagree with their first pass
    synchronize(device)
    row: Row = {"saved_bytes": meter.peak_bytes}
    if device.type == "cuda":
        row["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    if repeats > 0:
        seconds, host_seconds = [], []
        for _ in range(repeats):
            clock = Stopwatch(device)
            run_step(learner, task, step)
            host_seconds.append(clock.host_elapsed())
            seconds.append(clock.elapsed())
        row["seconds"] = statistics.median(seconds)
        row["host_seconds"] = statistics.median(host_seconds)
    return row
