"""A benchmark's outputs: cells, markdown tables, CSV files and plots."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from litemeta.bench.report import (
    configuration_columns,
    machine_description,
    plot_by_mode,
    titled_table,
    write_csv,
    write_outputs,
)
from litemeta.evaluation import format_cell, markdown_table

PNG = b"\x89PNG\r\n\x1a\n"


def test_cells_show_three_significant_digits_or_thousands():
    assert format_cell(0.012345) == "0.0123"
    assert format_cell(2.0) == "2"
    assert format_cell(999.4) == "999"
    assert format_cell(12345.6) == "12,346"
    assert format_cell(None) == ""
    assert format_cell(7) == "7" and format_cell("ok") == "ok"


def test_markdown_tables_have_every_key_or_the_chosen_columns():
    rows = [{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}]
    assert markdown_table(rows) == "| a | b | c |\n|---|---|---|\n| 1 | 0.5 |  |\n| 2 |  | x |\n"
    assert markdown_table(rows, ["c", "a"]) == "| c | a |\n|---|---|\n|  | 1 |\n| x | 2 |\n"
    assert titled_table("Title.", rows[:1], ["- note one", "- note two"]) == (
        "Title.\n\n| a | b |\n|---|---|\n| 1 | 0.5 |\n\n- note one\n- note two\n"
    )


def test_a_grid_row_is_named_by_its_configuration():
    row = {"learner": "protonets", "image_size": 84, "support": 50, "mode": "lite-8"}
    assert configuration_columns({**row, "status": "ok", "seconds": 1.0}) == {
        "learner": "protonets",
        "px": 84,
        "N": 50,
        "mode": "lite-8",
        "status": "ok",
    }
    chosen = configuration_columns({**row, "precision": "bf16", "status": "ok"})
    assert list(chosen) == ["learner", "px", "N", "mode", "precision", "status"]
    assert chosen["precision"] == "bf16"
    assert "precision" not in configuration_columns({**row, "precision": "auto", "status": "ok"})


def test_csv_columns_are_every_key_in_first_seen_order(tmp_path: Path):
    rows = [{"b": 1, "a": 2.5}, {"a": 3, "c": "x"}]
    write_csv(rows, tmp_path / "rows.csv")
    with (tmp_path / "rows.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["b", "a", "c"]
        assert list(reader) == [{"b": "1", "a": "2.5", "c": ""}, {"b": "", "a": "3", "c": "x"}]


def test_outputs_are_written_side_by_side(tmp_path: Path):
    drawn = []

    def plot(path: Path) -> Path:
        drawn.append(path)
        path.write_bytes(PNG)
        return path

    rows = [{"mode": "inference", "seconds": 1.5}]
    paths = write_outputs(rows, tmp_path / "new", "speed", "the table\n", plot)
    assert paths == {kind: tmp_path / "new" / f"speed.{kind}" for kind in ("csv", "md", "png")}
    assert drawn == [paths["png"]]
    assert paths["md"].read_text() == "the table\n"
    assert paths["csv"].read_text().splitlines() == ["mode,seconds", "inference,1.5"]


def test_plots_by_mode_draw_measured_and_estimated_points(tmp_path: Path):
    rows = [
        {"learner": "p", "image_size": 32, "support": n, "mode": mode, "peak": peak, "est": est}
        for n, mode, peak, est in [
            (10, "inference", 1.0, None),
            (20, "inference", 2.0, None),
            (10, "backprop", 3.0, 3.0),
            (20, "backprop", None, 6.0),  # did not fit: drawn from its estimate
            (10, "lite-8", None, None),  # nothing to draw
        ]
    ]
    path = plot_by_mode(rows, "peak", "peak", tmp_path / "plot.png", estimate="est", scale=2.0)
    assert path.read_bytes()[:8] == PNG


def test_the_machine_is_named_with_its_torch_threads_and_versions():
    line = machine_description()
    assert f"{torch.get_num_threads()} torch threads" in line
    assert f"torch {torch.__version__}" in line and "Python 3." in line
