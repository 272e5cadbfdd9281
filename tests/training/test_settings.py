"""The meta-training settings: defaults, range checks that name the setting, and round trips
through YAML and a weights-only checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from litemeta.config import ConfigError
from litemeta.lite import LiteSettings
from litemeta.training.settings import OptimConfig, TrainingConfig


def test_the_defaults_are_valid_and_documented_values():
    config = TrainingConfig()
    assert (config.steps, config.tasks_per_step, config.precision) == (10_000, 16, "auto")
    assert config.lite == LiteSettings(h=40)
    assert config.optim == OptimConfig(lr=5e-4, group_lr={}, weight_decay=0.0, grad_clip=None)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tasks_per_step=0", "tasks_per_step must be at least 1, got 0"),
        ("query_batch_size=-2", "query_batch_size must be at least 1, got -2"),
        ("checkpoint_every=0", "checkpoint_every must be at least 1, got 0"),
        ("log_every=0", "log_every must be at least 1, got 0"),
        ("validate_every=-1", r"validate_every must be >= 0 \(0: never\), got -1"),
        ("lite.h=0", "lite.h must be null, auto or at least 1, got 0"),
        ("optim.lr=0", "optim.lr must be a finite number > 0, got 0.0"),
        ("optim.lr=.nan", "optim.lr must be a finite number, got nan"),
        ("optim.group_lr.backbone=-1", "optim.group_lr.backbone must be a finite number > 0"),
        ("optim.group_lr={head: 0}", "optim.group_lr.head must be a finite number > 0, got 0.0"),
        ("optim.group_lr.head=.inf", "optim.group_lr.head must be a finite number, got inf"),
        ("seed=-1", "seed must be a whole number >= 0 and <= 9223372036854775807, got -1"),
        (
            "lite.row_tolerance=-1",
            r"lite.row_tolerance \(null: by precision\).* >= 0",
        ),
        ("lite.row_tolerance=.inf", "lite.row_tolerance must be a finite number, got inf"),
        (
            "optim.grad_clip=-1",
            r"optim.grad_clip \(null: no clipping\) .* > 0, got -1.0",
        ),
    ],
)
def test_values_out_of_range_name_the_setting(override, message):
    with pytest.raises(ConfigError, match=message):
        TrainingConfig().apply_overrides([override])


def test_validation_can_be_turned_off_and_lite_set_to_full_backpropagation():
    config = TrainingConfig().apply_overrides(["validate_every=0", "lite.h=null"])
    assert config.validate_every == 0 and config.lite.h is None


def test_settings_round_trip_through_yaml_json_and_a_weights_only_checkpoint(tmp_path: Path):
    config = TrainingConfig().apply_overrides(
        ["steps=7", "lite.stratified=true", "optim.group_lr={backbone: 1e-5}", "output_dir=out"]
    )
    config.to_yaml(tmp_path / "training.yaml")
    assert TrainingConfig.from_yaml(tmp_path / "training.yaml") == config
    as_dict = config.to_dict()
    assert TrainingConfig.from_dict(json.loads(json.dumps(as_dict))) == config
    torch.save({"config": as_dict}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["config"]
    assert TrainingConfig.from_dict(loaded) == config
    assert as_dict["lite"] == {  # the settings only: no generator or collector
        "h": 40,
        "stratified": True,
        "gradient_checkpointing": False,
        "objective": "unbiased",
        "unbiased_scaling": None,
        "shared_subset": None,
        "redraw_per_query_batch": None,
        "row_tolerance": None,
        "rows_with_queries": False,
    }


def test_the_lite_section_is_the_saved_form_of_lite_settings():
    config = TrainingConfig.from_dict({"lite": {"h": 7, "rows_with_queries": True}})
    assert isinstance(config.lite, LiteSettings)
    saved = config.to_dict()["lite"]
    assert saved == {
        "h": 7,
        "stratified": False,
        "gradient_checkpointing": False,
        "objective": "unbiased",
        "unbiased_scaling": None,
        "shared_subset": None,
        "redraw_per_query_batch": None,
        "row_tolerance": None,
        "rows_with_queries": True,
    }  # the run-time generator and collector are not settings
    assert TrainingConfig.from_dict(config.to_dict()) == config
    for runtime in ("generator", "deferred"):
        with pytest.raises(ConfigError, match=f"unknown key '{runtime}'"):
            config.apply_overrides([f"lite.{runtime}=1"])
