"""A diverged model is never saved, loaded or used as a trained one: settings that would
make it are refused, a non-finite step stops training before its checkpoint, and every
reader of a saved model refuses non-finite weights, naming the file."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from litemeta.checkpoint import CheckpointError, load_checkpoint, save_atomically
from litemeta.cli import main
from litemeta.config import ConfigError
from litemeta.experiment import load_experiment
from litemeta.learners import load_learner
from litemeta.training import OptimConfig, TrainingConfig, TrainingDiverged, train
from tests.cli_helpers import TINY_OVERRIDES
from tests.hostile.conftest import one_line_error
from tests.train_helpers import SyntheticTasks, TinyProtoNet


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.optim.grad_clip=nan", "training.optim.grad_clip must be a finite number"),
        ("training.optim.grad_clip=.nan", "training.optim.grad_clip must be a finite number"),
        ("training.optim.weight_decay=inf", "training.optim.weight_decay must be a finite"),
        ("training.optim.weight_decay=.inf", "training.optim.weight_decay must be a finite"),
        ("training.optim.weight_decay=-1", "training.optim.weight_decay must be a finite"),
        ("training.optim.lr=.nan", "training.optim.lr must be a finite number"),
        ("model.options.distance_scale=.nan", "distance_scale must be a finite number"),
        ("training.lite.row_tolerance=.nan", "training.lite.row_tolerance must be a finite"),
    ],
)
def test_non_finite_settings_are_refused_naming_them(override, message, tmp_path, capsys):
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, override]
    assert main([*argv, f"training.output_dir={tmp_path / 'run'}"]) == 1
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_non_finite_number_built_in_python_is_refused_too():
    with pytest.raises(ConfigError, match=r"optim.grad_clip .*must be a finite number"):
        TrainingConfig(optim=OptimConfig(grad_clip=float("nan")))


def _config(tmp_path: Path, steps: int) -> TrainingConfig:
    return TrainingConfig.from_dict(
        {
            "steps": steps,
            "tasks_per_step": 1,
            "query_batch_size": 8,
            "checkpoint_every": 1,
            "validate_every": 1,
            "output_dir": str(tmp_path / "run"),
        }
    )


def test_a_step_that_makes_the_weights_non_finite_writes_no_checkpoint(tmp_path, monkeypatch):
    """The last step's optimiser update turns a weight into NaN: its loss was finite, so
    only the parameters show it. Training stops with the divergence message; best.pt and
    last.pt stay those of the step before, with finite weights."""
    torch.manual_seed(0)
    learner = TinyProtoNet()
    step = torch.optim.Adam.step

    def diverging_step(optimiser, *args, **kwargs):
        result = step(optimiser, *args, **kwargs)
        if optimiser.state[next(learner.parameters())]["step"] == 2:
            with torch.no_grad():
                next(learner.parameters())[0, 0] = float("nan")
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", diverging_step)
    validation = [SyntheticTasks(seed=9)(0)]
    with pytest.raises(
        TrainingDiverged, match=r"step 2: network.1.weight is not finite; training diverged"
    ):
        train(_config(tmp_path, steps=2), learner, SyntheticTasks(), validation, progress=False)
    for name in ("last.pt", "best.pt"):
        saved = load_checkpoint(tmp_path / "run" / name)
        assert saved["step"] == 1
        assert all(torch.isfinite(t).all() for t in saved["model"].values())


def _poison(run: Path, destination: Path) -> Path:
    """A copy of ``run`` whose best.pt has a NaN weight, re-sealed with a valid checksum (as
    a diverged run would have written it)."""
    shutil.copytree(run, destination)
    checkpoint = load_checkpoint(destination / "best.pt")
    name = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][name].view(-1)[0] = float("nan")
    save_atomically(checkpoint, destination / "best.pt")
    return destination


def test_every_reader_refuses_non_finite_weights_naming_the_file(
    tiny_run, folders, tmp_path, capsys
):
    poisoned = _poison(tiny_run, tmp_path / "diverged")
    best = poisoned / "best.pt"
    with pytest.raises(CheckpointError, match=f"{best} holds non-finite weights"):
        load_learner(best)
    if importlib.util.find_spec("fastapi") is not None:  # what `litemeta serve` loads
        from litemeta.serve.recogniser import Personaliser

        with pytest.raises(CheckpointError, match=f"{best} holds non-finite weights"):
            Personaliser.from_checkpoint(poisoned)
    support, query = folders
    commands = [
        ["evaluate", "--checkpoint", str(poisoned), "--tasks", "1", *TINY_OVERRIDES],
        [
            "personalise",
            "--checkpoint",
            str(poisoned),
            "--support",
            str(support),
            "--query",
            str(query),
        ],
    ]
    if importlib.util.find_spec("onnx") is not None:
        out = tmp_path / "model.onnx"
        commands.append(
            ["export", "--checkpoint", str(poisoned), "--support", str(support), "--out", str(out)]
        )
    for argv in commands:
        assert main(argv) == 1
        line = one_line_error(capsys)
        assert f"{best} holds non-finite weights" in line and "diverged" in line


def test_a_checkpoint_whose_model_is_not_tensors_is_named(tiny_run, tmp_path, capsys):
    shutil.copytree(tiny_run, tmp_path / "odd")
    checkpoint = load_checkpoint(tmp_path / "odd" / "best.pt")
    checkpoint["model"] = "weights"
    save_atomically(checkpoint, tmp_path / "odd" / "best.pt")
    argv = ["evaluate", "--checkpoint", str(tmp_path / "odd"), "--tasks", "1", *TINY_OVERRIDES]
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert f"{tmp_path / 'odd' / 'best.pt'} holds no model weights" in line and "str" in line


def test_experiment_settings_are_checked_like_the_command_line():
    with pytest.raises(ConfigError, match=r"training\.optim\.grad_clip"):
        load_experiment("default", ["training.optim.grad_clip=.inf"])
