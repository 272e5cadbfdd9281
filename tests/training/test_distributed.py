"""Two CPU processes (gloo) against one process over the same tasks."""

import csv
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import SyntheticTasks, TinyProtoNet

from litemeta.checkpoint import load_checkpoint
from litemeta.training import TorchrunEnvironment, TrainingConfig, torchrun_environment, train

TASKS_PER_PROCESS = 2


def _settings(output_dir, tasks_per_step):
    return {
        "steps": 3,
        "tasks_per_step": tasks_per_step,
        "query_batch_size": 6,
        "checkpoint_every": 2,
        "validate_every": 2,
        "log_every": 1,
        "seed": 3,
        "output_dir": str(output_dir),
        "lite": {"h": 5},
        "optim": {"lr": 1e-2, "grad_clip": 1.0},
    }


def _validation():
    return [SyntheticTasks(seed=50)(i) for i in range(2)]


def _worker(rank, world_size, port, settings):
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # different initial weights: rank 0's are broadcast
    train(
        TrainingConfig.from_dict(settings),
        TinyProtoNet(),
        SyntheticTasks(),
        _validation(),
        progress=False,
    )


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _losses(run):
    with (run / "train.csv").open() as stream:
        return [float(row["loss"]) for row in csv.DictReader(stream)]


def test_two_processes_match_one_process_over_the_same_tasks(tmp_path):
    torch.manual_seed(100)
    single = _settings(tmp_path / "single", 2 * TASKS_PER_PROCESS)
    train(
        TrainingConfig.from_dict(single),
        TinyProtoNet(),
        SyntheticTasks(),
        _validation(),
        progress=False,
    )

    parallel = _settings(tmp_path / "parallel", TASKS_PER_PROCESS)
    mp.spawn(_worker, args=(2, _free_port(), parallel), nprocs=2, join=True)

    for name in ("last.pt", "best.pt"):
        one = load_checkpoint(tmp_path / "single" / name)
        two = load_checkpoint(tmp_path / "parallel" / name)
        assert (one["step"], two["world_size"]) == (two["step"], 2)
        for key, value in one["model"].items():
            torch.testing.assert_close(two["model"][key], value, rtol=1e-5, atol=1e-6)
        # Adam is nearly invariant to the gradient's scale; its moments are not
        for index, state in one["optimizer"]["state"].items():
            for moment in ("exp_avg", "exp_avg_sq"):
                expected = state[moment]
                actual = two["optimizer"]["state"][index][moment]
                torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-9)
    assert len(_losses(tmp_path / "parallel")) == 3
    torch.testing.assert_close(
        torch.tensor(_losses(tmp_path / "parallel")), torch.tensor(_losses(tmp_path / "single"))
    )


def _assert_same_weights(run_a, run_b):
    a, b = load_checkpoint(run_a / "last.pt"), load_checkpoint(run_b / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torchrun_launch_matches_one_process(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import torch
            from train_helpers import SyntheticTasks, TinyProtoNet
            from litemeta.training import TrainingConfig, train

            torch.set_num_threads(1)
            torch.manual_seed(100)
            settings = {_settings(tmp_path / "torchrun", TASKS_PER_PROCESS)!r}
            train(TrainingConfig.from_dict(settings), TinyProtoNet(), SyntheticTasks(),
                  progress=False)
            """
        )
    )
    tests = Path(__file__).parents[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    subprocess.run(
        [*command, "--nproc_per_node", "2", str(script)], env=environment, check=True, timeout=300
    )
    torch.manual_seed(100)
    single = _settings(tmp_path / "single", 2 * TASKS_PER_PROCESS)
    train(TrainingConfig.from_dict(single), TinyProtoNet(), SyntheticTasks(), progress=False)
    _assert_same_weights(tmp_path / "single", tmp_path / "torchrun")


def test_the_torchrun_variables_are_read_in_one_place(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_environment() == TorchrunEnvironment(rank=0, world_size=1, local_rank=0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_environment() == TorchrunEnvironment(rank=3, world_size=4, local_rank=1)
