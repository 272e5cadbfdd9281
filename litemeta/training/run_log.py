"""Training logs in the output directory: CSV files and TensorBoard scalars.

Both are resume-aware: rows and events logged after the step a run resumes from (written by
the interrupted run after its last checkpoint) are dropped, so each step appears once.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["CsvLog", "RunLog"]


class CsvLog:
    """Append rows with fixed columns (the first is ``step``) to a CSV file."""

    def __init__(self, path: Path, columns: Sequence[str], start_step: int) -> None:
        self.path = path
        self.columns = list(columns)
        kept = []
        if path.exists():
            with path.open(newline="") as stream:
                kept = [row for row in csv.DictReader(stream) if int(row["step"]) <= start_step]
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, self.columns)
            writer.writeheader()
            writer.writerows(kept)

    def write(self, row: Mapping[str, float | int | None]) -> None:
        with self.path.open("a", newline="") as stream:
            csv.DictWriter(stream, self.columns).writerow(row)


class RunLog:
    """``train.csv``, ``validation.csv``, TensorBoard events and ``run.log`` (notes such as
    the memory plan, appended, one per line) under ``directory``."""

    TRAIN_COLUMNS = ("step", "loss", "accuracy", "tasks_per_second", "images_per_second")
    VALIDATION_COLUMNS = ("step", "accuracy", "ci95")

    def __init__(self, directory: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.train_csv = CsvLog(directory / "train.csv", self.TRAIN_COLUMNS, start_step)
        self.validation_csv = CsvLog(
            directory / "validation.csv", self.VALIDATION_COLUMNS, start_step
        )
        self.tensorboard = SummaryWriter(directory / "tensorboard", purge_step=start_step + 1)

    def note(self, line: str) -> None:
        """Append ``line`` to ``run.log``."""
        with (self.directory / "run.log").open("a") as stream:
            stream.write(line.rstrip("\n") + "\n")

    def log_train(self, row: Mapping[str, float | int]) -> None:
        self._write(self.train_csv, "train", row)

    def log_validation(self, row: Mapping[str, float | int]) -> None:
        self._write(self.validation_csv, "validation", row)

    def _write(self, csv_log: CsvLog, prefix: str, row: Mapping[str, float | int]) -> None:
        csv_log.write(row)
        for name, value in row.items():
            if name != "step":
                self.tensorboard.add_scalar(f"{prefix}/{name}", value, row["step"])

    def close(self) -> None:
        self.tensorboard.close()
