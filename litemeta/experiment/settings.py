"""One YAML file describes a whole experiment: the model, the data, training, evaluation.

This module holds that description as a tree of dataclasses and reads it from YAML (or a
shipped config's name) with ``a.b=value`` overrides; :mod:`litemeta.experiment.builders`
turns it into a learner and task sources.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from litemeta.backbones import FilmPlacement
from litemeta.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_from_yaml,
    config_to_dict,
    load_yaml,
)
from litemeta.data.settings import DataConfig
from litemeta.learners.backbone_learner import DEFAULT_CHUNK_SIZE
from litemeta.learners.factory import LEARNERS, checked_options
from litemeta.lite import check_chunk_size
from litemeta.training.settings import TrainingConfig

__all__ = [
    "EvaluationConfig",
    "ExperimentConfig",
    "ModelConfig",
    "load_experiment",
    "shipped_config",
]


@dataclass
class ModelConfig:
    """Which learner on which backbone.

    ``learner_options`` holds constructor options per learner name, used only when that
    learner is chosen (so a config can tune ProtoNets and still run with
    ``model.learner=simple_cnaps``); ``options`` go to whichever learner is chosen and
    override those. ``chunk_size``: support images per forward call (a run-time setting,
    not part of the model's description: a checkpoint loads under any).
    """

    learner: str = "protonets"
    backbone: str = "efficientnet_lite0"
    image_size: int = 84
    pretrained: bool = True
    weights_file: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    learner_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Where FiLM modulates the backbone (``null``: the published placement where one is
    #: defined, see :mod:`litemeta.backbones.film`).
    film_placement: FilmPlacement | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        """Refuse a size, learner or option that cannot be built; check option types."""
        try:
            check_chunk_size(self.chunk_size, name="model.chunk_size")
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
        if self.weights_file is not None:
            self.weights_file = os.path.expanduser(self.weights_file)
        if self.image_size < 1:
            raise ConfigError(
                f"model.image_size must be at least 1 (pixels), got {self.image_size}"
            )
        if self.learner not in LEARNERS:
            raise ConfigError(
                f"model.learner: unknown learner '{self.learner}'; choose one of {sorted(LEARNERS)}"
            )
        unknown = sorted(set(self.learner_options) - set(LEARNERS))
        if unknown:
            raise ConfigError(
                f"model.learner_options names unknown learners {unknown}; use names from "
                f"{sorted(LEARNERS)}"
            )
        self.learner_options = {
            name: checked_options(name, options, f"model.learner_options.{name}")
            for name, options in self.learner_options.items()
        }
        self.options = checked_options(self.learner, self.options)


@dataclass
class EvaluationConfig:
    """Test tasks per split, or per test source for several Meta-Dataset sources (600, as
    for Meta-Dataset; 0: ``train`` skips the test evaluation) and the query batch size.
    ``chunk_size``: support images per forward call (``None``: the model's; ``auto``: the
    largest that fits ``training.memory_budget``, :mod:`litemeta.training.memory_plan`)."""

    tasks: int = 600
    query_batch_size: int = 256
    seed: int = 1
    chunk_size: int | Literal["auto"] | None = None

    def __post_init__(self) -> None:
        if self.tasks < 0:
            raise ConfigError(
                f"evaluation.tasks must be >= 0 (0: no test evaluation), got {self.tasks}"
            )
        if self.query_batch_size < 1:
            raise ConfigError(
                f"evaluation.query_batch_size must be at least 1, got {self.query_batch_size}"
            )
        if self.seed < 0:
            raise ConfigError(f"evaluation.seed must be >= 0, got {self.seed}")
        if isinstance(self.chunk_size, int) and self.chunk_size < 1:
            raise ConfigError(
                f"evaluation.chunk_size must be null, auto or at least 1, got {self.chunk_size}"
            )


@dataclass
class ExperimentConfig:
    """The whole experiment; see ``litemeta/configs/*.yaml`` for complete examples."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict of the settings (YAML safe)."""
        return config_to_dict(self)


def is_shipped(name: str) -> bool:
    """Whether ``name`` is a config shipped with the package."""
    return (resources.files("litemeta") / "configs" / f"{name}.yaml").is_file()


def shipped_config(name: str) -> Path:
    """Path of a config shipped with the package (``default``, ``orbit``, ...)."""
    path = Path(str(resources.files("litemeta") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no shipped config '{name}': choose one of {shipped} or give a path")
    return path


#: Settings that moved, by old dotted key: where they are now, and why.
MOVED_SETTINGS = {
    "training.lite.chunk_size": (
        "model.chunk_size: one chunk size now bounds every pass over a support set, "
        "with LITE and without"
    ),
    "model.options.chunk_size": (
        "model.chunk_size: how many images go through the backbone at once is a run-time "
        "setting, not a learner option"
    ),
    "data.orbit.drop_absent_target_frames": (
        "data.orbit.filter_target_frames, part of data.orbit.protocol (docs/data.md, "
        "'Fidelity: ORBIT')"
    ),
    **{
        f"data.orbit_{name}": f"data.orbit.{name} (the section of ORBIT's sampler settings)"
        for name in (
            "target",
            "clip_length",
            "min_target_frames",
            "target_frames",
            "context_clip_stride",
            "max_context_clips",
            "frame_cap",
            "max_way",
        )
    },
}


#: Settings renamed in place, by old dotted key: still read, with a warning naming the new key.
RENAMED_SETTINGS = {
    "data.vtab_support_size": "data.vtab.support_size",
    "data.vtab_query_limit": "data.vtab.query_limit",
    "data.verify_crc": "data.meta_dataset.verify_crc",  # runs saved before the kinds' sections
}


def _rename_settings(
    data: Any, overrides: Sequence[str], source: str
) -> tuple[Any, list[str], bool]:
    """``data`` and ``overrides`` with :data:`RENAMED_SETTINGS` under their new keys (a
    warning names each), and whether ``data`` changed."""
    changed = False
    overrides = list(overrides)
    for old, new in RENAMED_SETTINGS.items():
        (section_name, old_key), new_path = old.split("."), new.split(".")
        section = data.get(section_name) if isinstance(data, dict) else None
        places = []
        if isinstance(section, dict) and old_key in section:
            value = section.pop(old_key)
            target = section.setdefault(new_path[1], {})
            if isinstance(target, dict):
                target.setdefault(new_path[2], value)
            changed = True
            places.append(source)
        for n, override in enumerate(overrides):
            key, sep, value = override.partition("=")
            if sep and key.strip() == old:
                overrides[n] = f"{new}={value}"
                places.append(f"override {override!r}")
        for place in places:
            warnings.warn(f"{place}: {old} is now {new}; read as that", stacklevel=3)
    return data, overrides, changed


def _refuse_moved_settings(data: Any, overrides: Sequence[str], source: str) -> None:
    for old, new in MOVED_SETTINGS.items():
        section = data
        for part in old.split("."):
            section = section.get(part) if isinstance(section, dict) else None
        given = section is not None or any(o.split("=")[0].strip() == old for o in overrides)
        if given:
            raise ConfigError(f"{source}: {old} is now {new}")


def load_experiment(config: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML file (or a shipped config's name) and apply ``key=value`` overrides."""
    path = Path(config)
    if not path.suffix and (not path.exists() or (path.is_dir() and is_shipped(str(config)))):
        path = shipped_config(str(config))  # a shipped name wins over a folder named like it
    if path.is_dir():
        saved = path / "experiment.yaml"
        hint = f"; a run's settings are in {saved}" if saved.is_file() else ""
        raise ConfigError(f"config {path} is a folder: give a YAML file{hint}")
    if path.is_file():
        data = load_yaml(path.read_text(), str(path))
        _refuse_moved_settings(data, overrides, str(path))
        data, overrides, renamed = _rename_settings(data, overrides, str(path))
        if renamed:
            return apply_overrides(config_from_dict(ExperimentConfig, data), overrides)
    return apply_overrides(config_from_yaml(ExperimentConfig, path), overrides)
