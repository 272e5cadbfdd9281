"""Loader workers: a number the machine cannot run is refused, and the workers stop on
every way out of a run (an error, SIGTERM), not whenever the garbage collector runs."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
import torch

import litemeta.training.trainer as trainer
from litemeta.cli import main
from litemeta.data.loading import max_workers
from litemeta.training import TrainingConfig, train
from litemeta.training.output_lock import LOCK_FILE
from tests.cli_helpers import TINY_OVERRIDES
from tests.hostile.conftest import one_line_error
from tests.train_helpers import SyntheticTasks, TinyProtoNet


def test_more_workers_than_the_machine_runs_are_refused(tmp_path, capsys):
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, "data.workers=100000"]
    assert main([*argv, f"training.output_dir={tmp_path / 'run'}"]) == 1
    line = one_line_error(capsys)
    refused = "data.workers=100000 is more loader processes than this machine can run"
    assert f"{refused}: at most {max_workers()}" in line
    assert f"{os.cpu_count()} here" in line and "data.workers=auto" in line
    assert main(["evaluate", "--tasks", "1", *TINY_OVERRIDES, "data.workers=100000"]) == 1
    assert "data.workers=100000" in one_line_error(capsys)


class _FailingTasks(SyntheticTasks):
    def __call__(self, index: int):
        if index == 3:
            raise OSError("the disk went away")
        return super().__call__(index)


def test_workers_stop_when_training_fails(tmp_path):
    config = TrainingConfig.from_dict(
        {"steps": 6, "tasks_per_step": 1, "output_dir": str(tmp_path / "run"), "validate_every": 0}
    )
    torch.manual_seed(0)
    with pytest.raises(OSError, match="the disk went away"):
        train(config, TinyProtoNet(), _FailingTasks(), progress=False, workers=2)
    assert multiprocessing.active_children() == []


def test_sigterm_stops_training_and_its_workers_and_says_how_to_resume(
    tmp_path, capsys, monkeypatch
):
    output = tmp_path / "run"
    step = trainer.Trainer._step

    def step_then_terminated(self, number, tasks):
        metrics = step(self, number, tasks)
        if number == 2:
            assert multiprocessing.active_children()  # the workers are running
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(trainer.Trainer, "_step", step_then_terminated)
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, "training.steps=4", "data.workers=2"]
    assert main([*argv, f"training.output_dir={output}"]) == 143
    line = one_line_error(capsys)
    assert line.startswith("litemeta: terminated (SIGTERM): the last checkpoint is")
    assert line.endswith("--resume")
    assert multiprocessing.active_children() == []
    assert not (output / LOCK_FILE).exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
