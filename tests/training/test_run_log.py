"""The run log: CSV rows and TensorBoard scalars, each step once after a resume."""

from __future__ import annotations

import csv
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litemeta.training.run_log import CsvLog, RunLog


def _train_row(step: int, loss: float) -> dict[str, float]:
    return {
        "step": step,
        "loss": loss,
        "accuracy": step / 10,
        "tasks_per_second": 2.0,
        "images_per_second": 20.0,
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_csv_log_keeps_the_rows_up_to_the_step_it_resumes_from(tmp_path: Path):
    path = tmp_path / "log.csv"
    log = CsvLog(path, ["step", "value"], start_step=0)
    assert path.read_text() == "step,value\n"
    for step in (1, 2, 3, 4):
        log.write({"step": step, "value": step * 1.5})
    assert path.read_text().splitlines() == ["step,value", "1,1.5", "2,3.0", "3,4.5", "4,6.0"]
    resumed = CsvLog(path, ["step", "value"], start_step=2)  # steps 3 and 4 came after it
    resumed.write({"step": 3, "value": -1})
    assert path.read_text().splitlines() == ["step,value", "1,1.5", "2,3.0", "3,-1"]
    CsvLog(path, ["step", "value"], start_step=0)  # a new run starts empty
    assert path.read_text() == "step,value\n"


def test_a_resumed_run_log_writes_each_step_once_in_csv_and_tensorboard(tmp_path: Path):
    log = RunLog(tmp_path, start_step=0)
    for step in (1, 2, 3, 4):
        log.log_train(_train_row(step, 1.0 / step))
    log.log_validation({"step": 2, "accuracy": 0.5, "ci95": 0.125})
    log.log_validation({"step": 4, "accuracy": 0.75, "ci95": 0.25})
    log.close()
    resumed = RunLog(tmp_path, start_step=2)  # the last checkpoint was at step 2
    resumed.log_train(_train_row(3, 9.0))
    resumed.close()

    train = _rows(tmp_path / "train.csv")
    assert list(train[0]) == list(RunLog.TRAIN_COLUMNS)
    assert [(r["step"], float(r["loss"])) for r in train] == [("1", 1.0), ("2", 0.5), ("3", 9.0)]
    validation = _rows(tmp_path / "validation.csv")
    assert validation == [{"step": "2", "accuracy": "0.5", "ci95": "0.125"}]

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == sorted(
        [f"train/{c}" for c in RunLog.TRAIN_COLUMNS[1:]]
        + [f"validation/{c}" for c in RunLog.VALIDATION_COLUMNS[1:]]
    )
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(1, 1.0), (2, 0.5), (3, 9.0)]
    assert [(e.step, e.value) for e in events.Scalars("validation/ci95")] == [(2, 0.125)]
