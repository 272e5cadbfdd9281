"""What a learner's meta-training step costs in memory, measured on the model itself: the bytes
autograd saves for backward and the working memory of its largest layer, each a line in the
number of images with autograd at once (see :mod:`litemeta.training.memory_plan`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from litemeta.learners.base import FewShotLearner
from litemeta.lite import LiteSettings
from litemeta.precision import Precision, autocast, resolve_precision
from litemeta.tasks import Task
from litemeta.training.saved_tensors import SavedTensorMeter
from litemeta.training.step import queue_backward_task

__all__ = [
    "PROBE_SIZES",
    "Line",
    "ModelCost",
    "WorkingMeter",
    "learner_chunk_size",
    "measure_cost",
    "measure_inference_cost",
    "probe_task",
    "task_image_bytes",
    "tensor_bytes",
]

#: Sizes of the two probe steps (images with autograd at once).
PROBE_SIZES = (1, 2)


@dataclass(frozen=True)
class Line:
    """``intercept + slope x images`` bytes."""

    intercept: float
    slope: float

    @classmethod
    def through(cls, points: dict[int, int]) -> Line:
        (k1, y1), (k2, y2) = sorted(points.items())
        slope = (y2 - y1) / (k2 - k1)
        return cls(y1 - slope * k1, slope)

    def __call__(self, images: float) -> float:
        return self.intercept + self.slope * images


@dataclass(frozen=True)
class ModelCost:
    """What a learner's step costs, measured by :func:`measure_cost`."""

    parameter_bytes: int
    trainable_bytes: int
    saved: Line
    working: Line
    precision: str
    image_size: int
    way: int

    @property
    def training_state_bytes(self) -> int:
        """Parameters and buffers, plus the gradients and Adam's two moments."""
        return self.parameter_bytes + 3 * self.trainable_bytes

    def training_peak(self, images: int, task_bytes: int = 0) -> float:
        """Accounted peak of a step holding ``images`` images with autograd at once."""
        return self.training_state_bytes + task_bytes + self.saved(images) + self.working(images)

    def inference_peak(self, images: int, task_bytes: int = 0) -> float:
        """Accounted peak of a pass without autograd over ``images`` images at once."""
        return self.parameter_bytes + task_bytes + self.working(images)


def tensor_bytes(tensors: Iterator[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def task_image_bytes(task: Task) -> int:
    """Bytes of a task's support and query images, and of its unknown images if it has any
    (open-set meta-training; they pass in query batches, so they add no other memory)."""
    images = (task.support_images, task.query_images, task.unknown_images)
    return tensor_bytes(image for image in images if image is not None)


def probe_task(way: int, image_size: int, device: torch.device) -> Task:
    """A ``way``-way task of random images, one support and one query image per class."""
    generator = torch.Generator().manual_seed(0)
    shape = (way, 3, image_size, image_size)
    labels = torch.arange(way)
    return Task(
        support_images=torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
        support_labels=labels,
        query_images=torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
        query_labels=labels.clone(),
        class_names=[f"class {c}" for c in range(way)],
    ).to(device)


class WorkingMeter:
    """The largest bytes of a leaf module's tensor inputs plus outputs, over every call."""

    def __init__(self) -> None:
        self.peak_bytes = 0

    def hook(self, module: nn.Module, inputs: tuple, output: object) -> None:
        outputs = output if isinstance(output, tuple | list) else (output,)
        tensors = [t for t in (*inputs, *outputs) if isinstance(t, Tensor)]
        self.peak_bytes = max(self.peak_bytes, tensor_bytes(iter(tensors)))

    @contextmanager
    def watching(self, model: nn.Module) -> Iterator[WorkingMeter]:
        leaves = [m for m in model.modules() if not any(m.children())]
        handles = [leaf.register_forward_hook(self.hook) for leaf in leaves]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def learner_chunk_size(learner: FewShotLearner, size: int | None) -> Iterator[None]:
    """Set the learner's chunk size (if it has one) for the block."""
    before = getattr(learner, "chunk_size", None)
    if before is None or size is None:
        yield
        return
    learner.chunk_size = size  # type: ignore[attr-defined]
    try:
        yield
    finally:
        learner.chunk_size = before  # type: ignore[attr-defined]


def _state_bytes(learner: FewShotLearner) -> tuple[int, int]:
    parameters = tensor_bytes(iter([*learner.parameters(), *learner.buffers()]))
    trainable = tensor_bytes(p for p in learner.parameters() if p.requires_grad)
    return parameters, trainable


def measure_cost(
    learner: FewShotLearner,
    *,
    image_size: int,
    way: int,
    lite: LiteSettings | None = None,
    precision: Precision = "auto",
) -> ModelCost:
    """Measure ``learner``'s step on a probe task (:func:`probe_task`) of ``way`` classes and
    ``image_size`` pixels, on the learner's device, at ``precision``, with ``lite``'s
    objective and options (h, the chunk size and the query batch all set to each of
    :data:`PROBE_SIZES`). The learner's gradients are cleared afterwards and the global
    random generators left as they were."""
    if way < max(PROBE_SIZES):
        raise ValueError(
            f"the memory probe needs tasks of at least {max(PROBE_SIZES)} classes, got {way}: "
            f"use a way of {max(PROBE_SIZES)} or more"
        )
    device = next(learner.parameters()).device
    task = probe_task(way, image_size, device)
    lite = lite if lite is not None else LiteSettings()
    saved, working = {}, {}
    devices = [device] if device.type == "cuda" else []
    was_training = learner.training
    learner.train()  # as meta-training runs it
    with torch.random.fork_rng(devices=devices):
        for k in PROBE_SIZES:
            meter = SavedTensorMeter(exclude=[*learner.parameters(), *learner.buffers()])
            hooks = WorkingMeter()
            settings = replace(lite, h=k)
            with learner_chunk_size(learner, k), hooks.watching(learner), meter.watching():
                outcome = queue_backward_task(
                    learner,
                    task,
                    lite=settings,
                    generator=torch.Generator().manual_seed(0),
                    query_batch_size=k,
                    precision=precision,
                )
            outcome.read()  # refuses rows that disagree with their first pass
            learner.zero_grad(set_to_none=True)
            saved[k], working[k] = meter.peak_bytes, hooks.peak_bytes
    learner.train(was_training)
    parameters, trainable = _state_bytes(learner)
    return ModelCost(
        parameter_bytes=parameters,
        trainable_bytes=trainable,
        saved=Line.through(saved),
        working=Line.through(working),
        precision=resolve_precision(device, precision),
        image_size=image_size,
        way=way,
    )


def measure_inference_cost(
    learner: FewShotLearner, *, image_size: int, way: int, precision: Precision = "auto"
) -> ModelCost:
    """The working memory of adapting and classifying without autograd, k = 1 and 2 images
    at a time (chunk and query batch), as a :class:`ModelCost` with no saved bytes."""
    device = next(learner.parameters()).device
    task = probe_task(way, image_size, device)
    working = {}
    for k in PROBE_SIZES:
        hooks = WorkingMeter()
        watching = learner_chunk_size(learner, k), hooks.watching(learner)
        with watching[0], watching[1], torch.no_grad(), autocast(device, precision):
            classifier = learner.adapt(task.support_images, task.support_labels)
            for batch in task.query_images.split(k):
                classifier(batch)
        working[k] = hooks.peak_bytes
    parameters, trainable = _state_bytes(learner)
    return ModelCost(
        parameter_bytes=parameters,
        trainable_bytes=trainable,
        saved=Line(0.0, 0.0),
        working=Line.through(working),
        precision=resolve_precision(device, precision),
        image_size=image_size,
        way=way,
    )
