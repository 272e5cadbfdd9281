"""A training process killed with SIGKILL (no handler runs, a checkpoint write may be cut
short) resumes from its last checkpoint and ends with exactly the weights of a run that was
never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from litemeta.checkpoint import CheckpointError, load_checkpoint
from tests.cli_helpers import TINY_OVERRIDES

STEPS = 40
SETTINGS = [
    *TINY_OVERRIDES,
    f"training.steps={STEPS}",
    "training.validate_every=0",
    "evaluation.tasks=0",
]


def _command(output: Path, *extra: str) -> list[str]:
    argv = ["train", "--no-baseline", *SETTINGS, f"training.output_dir={output}", *extra]
    return [sys.executable, "-m", "litemeta.cli", *argv]


def _environment() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _saved_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["step"] if path.exists() else 0
    except CheckpointError:  # cannot happen: writes are atomic; kept to fail with a message
        raise AssertionError(f"{path} was seen half-written") from None


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    environment = _environment()
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(killed), env=environment, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _saved_step(killed / "last.pt") < 3:
            assert process.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    stopped_at = _saved_step(killed / "last.pt")
    assert 3 <= stopped_at < STEPS, "the kill must land mid-run"

    subprocess.run(_command(killed, "--resume"), env=environment, check=True, capture_output=True)
    full = tmp_path / "full"
    subprocess.run(_command(full), env=environment, check=True, capture_output=True)

    resumed, uninterrupted = load_checkpoint(killed / "last.pt"), load_checkpoint(full / "last.pt")
    assert resumed["step"] == uninterrupted["step"] == STEPS
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert not list(killed.glob(".*.tmp")), "a cut-short write's temporary was left behind"
