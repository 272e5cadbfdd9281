"""Two trainings into one output directory: the second is refused naming the first; the
lock of a run that is gone is taken over with a warning; one lock per run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import litemeta.training.output_lock as output_lock
from litemeta.cli import main
from litemeta.training import OutputDirectoryInUse, Trainer, hold_output_directory
from litemeta.training.output_lock import LOCK_FILE
from tests.cli_helpers import TINY_OVERRIDES
from tests.hostile.conftest import one_line_error


def _lock_of(pid: int, host: str | None = None) -> str:
    host = host or socket.gethostname()
    return json.dumps({"pid": pid, "host": host, "started": "2026-01-01 00:00:00"})


def _live_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_second_training_into_a_held_directory_is_refused_naming_the_holder(tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()
    holder = _live_process()
    try:
        (output / LOCK_FILE).write_text(_lock_of(holder.pid))
        argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
        assert main(argv) == 1
        line = one_line_error(capsys)
        assert f"training output directory {output} is in use by another run" in line
        assert f"PID {holder.pid} on host {socket.gethostname()}" in line
        assert "training.output_dir" in line
        assert sorted(p.name for p in output.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_run_started_while_another_trains_is_refused(tmp_path, capsys, monkeypatch):
    """The second run starts while the first is in its training loop (no checkpoint yet)."""
    output = tmp_path / "run"
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    run = Trainer.run
    second: list[int] = []

    def train_and_start_another(self):
        held = dict(output_lock._HELD)
        output_lock._HELD.clear()  # as seen from another process
        try:
            second.append(main(argv))
        finally:
            output_lock._HELD.update(held)
        return run(self)

    monkeypatch.setattr(Trainer, "run", train_and_start_another)
    assert main(argv) == 0
    assert second == [1]
    assert "is in use by another run" in capsys.readouterr().err
    assert not (output / LOCK_FILE).exists()  # released when the run ended
    rows = (output / "train.csv").read_text().splitlines()
    assert len(rows) == 2  # the header and the one step of the one run


def test_the_lock_of_a_dead_run_is_taken_over_with_a_warning(tiny_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(tiny_run, output)
    gone = _live_process()
    gone.kill()
    gone.wait()
    (output / LOCK_FILE).write_text(_lock_of(gone.pid))
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    with pytest.warns(UserWarning, match=f"taking over the lock .*PID {gone.pid} on host"):
        assert main([*argv, "training.steps=2", "evaluation.tasks=0", "--resume"]) == 0
    assert not (output / LOCK_FILE).exists()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(_lock_of(2**22 + 7, host="elsewhere"))
    refused = pytest.raises(OutputDirectoryInUse, match="PID 4194311 on host elsewhere")
    with refused, hold_output_directory(tmp_path):
        pass


def test_one_lock_per_run_and_released_on_an_error(tmp_path):
    with hold_output_directory(tmp_path):
        with hold_output_directory(tmp_path / "."):  # the trainer inside the job
            assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()
    with pytest.raises(KeyError), hold_output_directory(tmp_path):
        {}["missing"]
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_refused_run_leaves_no_lock(tmp_path):
    output = tmp_path / "run"
    argv = ["train", "--no-baseline", *TINY_OVERRIDES, f"training.output_dir={output}"]
    assert main([*argv, "--resume"]) == 1
    assert not output.exists()
    Path(output).mkdir()
    assert main([*argv, "training.lite.stratified=true", "training.lite.h=1"]) == 1
    assert sorted(output.iterdir()) == []
