"""Meta-training settings: a dataclass tree, loaded from YAML, with ``a.b=value`` overrides."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from litemeta.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_from_yaml,
    config_to_dict,
)
from litemeta.lite import LiteSettings
from litemeta.precision import Precision
from litemeta.training.objective import resolve_objective

__all__ = ["ConfigError", "OptimConfig", "TrainingConfig"]


@dataclass
class OptimConfig:
    """Adam (Kingma & Ba, 2015). ``lr`` goes to ``learner.parameter_groups``; ``group_lr``
    overrides the rate of the groups the learner names; ``grad_clip`` caps the global norm."""

    lr: float = 5e-4
    group_lr: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    grad_clip: float | None = None


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
    ``None``: the device's free memory less a margin.
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
        if self.validate_every < 0:
            raise ConfigError(f"validate_every must be >= 0 (0: never), got {self.validate_every}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if isinstance(self.lite.h, int) and self.lite.h < 1:
            raise ConfigError(f"lite.h must be null, auto or at least 1, got {self.lite.h}")
        if self.memory_budget is not None and not 0 < self.memory_budget < math.inf:
            raise ConfigError(
                f"memory_budget must be null (free memory less a margin) or a positive "
                f"number of GiB, got {self.memory_budget}"
            )
        resolve_objective(self.lite)  # an unknown name, or flags that contradict it
        tolerance = self.lite.row_tolerance
        if tolerance is not None and not 0 <= tolerance < math.inf:
            raise ConfigError(
                f"lite.row_tolerance must be null (by precision) or a finite number >= 0, "
                f"got {tolerance}"
            )
        rates = {f"optim.group_lr.{name}": lr for name, lr in self.optim.group_lr.items()}
        for key, lr in {"optim.lr": self.optim.lr, **rates}.items():
            if not 0 < lr < math.inf:
                raise ConfigError(f"{key} must be positive and finite, got {lr}")
        if self.optim.grad_clip is not None and self.optim.grad_clip <= 0:
            raise ConfigError(
                f"optim.grad_clip must be null or positive, got {self.optim.grad_clip}"
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
