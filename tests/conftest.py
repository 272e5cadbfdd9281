"""Fixtures shared by every test."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run fastest on one thread, and stay fast when other jobs share the CPU
    (several threads then wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny run of ``train`` (``STYLED_OVERRIDES``), with its baseline and its report;
    shared by the tests of the jobs (tests/experiment/test_jobs.py) and of the commands
    (tests/test_cli.py)."""
    from litemeta.experiment import load_experiment
    from litemeta.experiment.jobs import META_TRAINED, UNTRAINED_BASELINE, train_experiment
    from tests.cli_helpers import STYLED_OVERRIDES as TINY

    output = tmp_path_factory.mktemp("run")
    config = load_experiment("default", [*TINY, f"training.output_dir={output}"])
    results = train_experiment(config)
    assert list(results) == [UNTRAINED_BASELINE, META_TRAINED]  # resnet18, random weights
    assert all(r.accuracy.n == 3 for r in results.values())
    return output
