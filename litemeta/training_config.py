"""Meta-training settings: a dataclass tree, loaded from YAML, with ``a.b=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from litemeta.precision import Precision

__all__ = ["ConfigError", "LiteConfig", "OptimConfig", "TrainingConfig"]


class ConfigError(ValueError):
    """A configuration key or value that cannot be used, with what to do about it."""


@dataclass
class LiteConfig:
    """LITE settings (Bronskill et al., 2021): ``h`` support images back-propagated per task.

    ``h: null`` back-propagates the whole support set; ``chunk_size`` bounds the images per
    forward call; ``stratified`` draws the subset per class; ``gradient_checkpointing``
    recomputes the back-propagated rows' activations in the backward pass.
    """

    h: int | None = 40
    chunk_size: int | None = None
    stratified: bool = False
    gradient_checkpointing: bool = False


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
    validation off); the last step always writes a checkpoint.
    """

    steps: int = 10_000
    tasks_per_step: int = 16
    query_batch_size: int = 64
    precision: Precision = "fp32"
    checkpoint_every: int = 500
    validate_every: int = 500
    log_every: int = 10
    seed: int = 0
    output_dir: str = "runs/train"
    lite: LiteConfig = field(default_factory=LiteConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
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
        for key in ("h", "chunk_size"):
            value = getattr(self.lite, key)
            if value is not None and value < 1:
                raise ConfigError(f"lite.{key} must be null or at least 1, got {value}")
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.optim.lr}")
        if self.optim.grad_clip is not None and self.optim.grad_clip <= 0:
            raise ConfigError(
                f"optim.grad_clip must be null or positive, got {self.optim.grad_clip}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """Build from nested mappings; unknown keys and ill-typed values raise ConfigError."""
        return _build(cls, data, prefix="")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (YAML / JSON / ``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        return cls.from_dict(data)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def apply_overrides(self, overrides: Sequence[str]) -> TrainingConfig:
        """A copy with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
        data = self.to_dict()
        for override in overrides:
            key, sep, text = override.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {override!r} is not of the form key=value")
            _set_dotted(data, key.strip().split("."), yaml.safe_load(text))
        return TrainingConfig.from_dict(data)


def _set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]... = value``; dataclass sections accept only their fields,
    mapping-valued settings (``optim.group_lr``) any key."""
    section: dict[str, Any] = data
    schema: Any = TrainingConfig
    for depth, part in enumerate(path):
        if schema is not None:
            _check_known(part, section, ".".join(path[:depth]))
            hint = typing.get_type_hints(schema)[part]
            schema = hint if dataclasses.is_dataclass(hint) else None
        if depth == len(path) - 1:
            section[part] = value
        elif not isinstance(section.get(part), dict):
            raise ConfigError(f"{'.'.join(path[: depth + 1])} is not a section")
        else:
            section = section[part]


def _check_known(key: str, section: Mapping[str, Any], where: str) -> None:
    if key in section:
        return
    place = f"section '{where}'" if where else "the training config"
    close = difflib.get_close_matches(key, list(section), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown key '{key}' in {place}{hint} (known: {', '.join(section)})")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        _check_known(key, dict.fromkeys(names), prefix.rstrip("."))
        values[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint``; convert ints and numeric strings to float."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits no option")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        key_type, value_type = typing.get_args(hint)
        return {
            _coerce(k, key_type, f"{key} key"): _coerce(v, value_type, f"{key}.{k}")
            for k, v in value.items()
        }
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if hint in (bool, int, str) and (type(value) is not hint):
        raise ConfigError(f"{key} must be of type {hint.__name__}, got {value!r}")
    return value
