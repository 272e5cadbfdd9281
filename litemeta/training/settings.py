"""Meta-training settings: a dataclass tree, loaded from YAML, with ``a.b=value`` overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from litemeta.config import (
    MAX_INTEGER,
    ConfigError,
    apply_overrides,
    check_number,
    config_from_dict,
    config_from_yaml,
    config_to_dict,
)
from litemeta.lite import LiteSettings, check_h
from litemeta.precision import Precision
from litemeta.training.objective import resolve_objective

__all__ = ["MAX_TASKS", "ConfigError", "OpenSetConfig", "OptimConfig", "TrainingConfig"]

#: The most tasks one run may train on (``steps * tasks_per_step``): far beyond any real
#: run (Meta-Dataset's training is 110,000 tasks), and a bound on the index list the
#: trainer builds for its task loader.
MAX_TASKS = 10**9


@dataclass
class OptimConfig:
    """Adam (Kingma & Ba, 2015). ``lr`` goes to ``learner.parameter_groups``; ``group_lr``
    overrides the rate of the groups the learner names; ``grad_clip`` caps the global norm."""

    lr: float = 5e-4
    group_lr: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    grad_clip: float | None = None


@dataclass
class OpenSetConfig:
    """Open-set meta-training (PEELER, Liu et al., CVPR 2020): each training task also gets
    the queries of ``unknown_classes`` classes outside its support set (``data.sampler.query``
    each; fixed-way episodes), and their summed negative entropy, ``weight`` times, divided
    by their number, joins the task's loss. ``unknown_classes: 0`` (default) turns it off."""

    unknown_classes: int = 0
    weight: float = 0.5


@dataclass
class TrainingConfig:
    """Everything the meta-training loop needs besides the learner and the tasks.

    ``steps`` optimiser steps, each over ``tasks_per_step`` tasks per process (gradient
    accumulation); queries go through the classifier ``query_batch_size`` at a time.
    ``checkpoint_every`` / ``validate_every`` / ``log_every`` count steps (0 turns
    validation off); the last step always writes a checkpoint and, unless validation is
    off, is validated, so ``best.pt`` covers a run resumed with more ``steps``.
    ``precision``: ``auto`` is bf16 autocast on a GPU and fp32 on the CPU
    (:mod:`litemeta.precision`). ``cudnn_benchmark``: let cuDNN time its convolution
    algorithms for each new input shape (``torch.backends.cudnn.benchmark``); ``null``
    (auto) turns it on when task shapes repeat (a fixed-way sampler). ``memory_budget``
    (GiB) bounds what ``lite.h: auto`` may use (:mod:`litemeta.training.memory_plan`);
    ``None``: the device's free memory less a margin. ``open_set``: :class:`OpenSetConfig`.
    """

    steps: int = 10_000
    tasks_per_step: int = 16
    query_batch_size: int = 64
    precision: Precision = "auto"
    cudnn_benchmark: bool | None = None
    checkpoint_every: int = 500
    validate_every: int = 500
    log_every: int = 10
    seed: int = 0
    output_dir: str = "runs/train"
    memory_budget: float | None = None
    lite: LiteSettings = field(default_factory=LiteSettings)
    optim: OptimConfig = field(default_factory=OptimConfig)
    open_set: OpenSetConfig = field(default_factory=OpenSetConfig)

    def __post_init__(self) -> None:
        self.output_dir = os.path.expanduser(self.output_dir)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        positive = {
            "steps": self.steps,
            "tasks_per_step": self.tasks_per_step,
            "query_batch_size": self.query_batch_size,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key} must be at least 1, got {value}")
            check_number(key, value, maximum=MAX_INTEGER)
        tasks = self.steps * self.tasks_per_step
        if tasks > MAX_TASKS:
            raise ConfigError(
                f"steps x tasks_per_step = {tasks} tasks, more than one run takes (at most "
                f"{MAX_TASKS:,}): lower steps or tasks_per_step"
            )
        if self.validate_every < 0:
            raise ConfigError(f"validate_every must be >= 0 (0: never), got {self.validate_every}")
        check_number("seed", self.seed, minimum=0, maximum=MAX_INTEGER)
        try:
            check_h(self.lite.h, name="lite.h", auto=True)
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
        if self.memory_budget is not None:
            check_number(
                "memory_budget (GiB; null: free memory less a margin)",
                self.memory_budget,
                above=0,
            )
        objective, _ = resolve_objective(self.lite)  # an unknown name, or contradicting flags
        self._check_open_set(objective.redraw_per_query_batch)
        if self.lite.row_tolerance is not None:
            check_number(
                "lite.row_tolerance (null: by precision)", self.lite.row_tolerance, minimum=0
            )
        rates = {f"optim.group_lr.{name}": lr for name, lr in self.optim.group_lr.items()}
        for key, lr in {"optim.lr": self.optim.lr, **rates}.items():
            check_number(key, lr, above=0)
        check_number("optim.weight_decay", self.optim.weight_decay, minimum=0)
        if self.optim.grad_clip is not None:
            check_number("optim.grad_clip (null: no clipping)", self.optim.grad_clip, above=0)

    def _check_open_set(self, redraw_per_query_batch: bool) -> None:
        """Raise :class:`ConfigError` for an ``open_set`` section out of range."""
        check_number(
            "open_set.unknown_classes (0: off)",
            self.open_set.unknown_classes,
            minimum=0,
            maximum=MAX_INTEGER,
        )
        check_number("open_set.weight", self.open_set.weight, minimum=0)
        if self.open_set.unknown_classes and redraw_per_query_batch:
            raise ConfigError(
                "open_set.unknown_classes needs one adaptation per task, but the objective "
                f"{self.lite.objective!r} adapts again for every query batch: choose "
                "lite.objective unbiased, or set open_set.unknown_classes to 0"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """Build from nested mappings; unknown keys and ill-typed values raise ConfigError."""
        return config_from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (YAML / JSON / ``torch.load(weights_only=True)`` safe)."""
        return config_to_dict(self)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        return config_from_yaml(cls, path)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def apply_overrides(self, overrides: Sequence[str]) -> TrainingConfig:
        """A copy with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
        return apply_overrides(self, overrides)
