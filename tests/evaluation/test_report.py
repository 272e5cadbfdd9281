import json

import pytest

from litemeta.evaluation import (
    EvaluationResult,
    evaluate,
    markdown_table,
    mean_with_ci,
    results_table,
    summarise_sources,
    write_report,
)

from .test_loop import _FixedPredictions, _video_task


def test_report_files(tmp_path):
    plain = EvaluationResult([0.5, 1.0], mean_with_ci([0.5, 1.0]))
    videos = evaluate(_FixedPredictions(), [_video_task([2, 2], [2, 2], [4, 4])], progress=False)
    paths = write_report({"emoji": plain, "orbit": videos}, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["emoji"]["accuracy"]["mean"] == pytest.approx(0.75)
    assert data["orbit"]["orbit"]["over_videos"]["video_accuracy"]["mean"] == 1.0
    table = paths["markdown"].read_text()
    assert "| emoji | 2 | 75.00 ± 34.65 |" in table
    for label in (
        "per video: mean over 1 videos",
        "per user: mean of each user's video means, over 1 users",
        "per task: mean of each task's video means, over 1 tasks",
    ):
        assert f"| orbit | {label} | 100.00 ± 0.00 | 0.00 ± 0.00 | 100.00 ± 0.00 |" in table
    pooled = "per user: each user's frames pooled, mean over 1 users"
    assert f"| orbit | {pooled} | 100.00 ± 0.00 | - | - |" in table
    assert table == results_table({"emoji": plain, "orbit": videos})
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


#: The whole report of three results, one with two sources and one of ORBIT videos, as the
#: report has always written it (each line by hand).
EXPECTED_REPORT = (
    "\n".join(
        [
            "| Model | Tasks | Accuracy (%) ± 95% CI (per task: its queries; mean over tasks) |",
            "|---|---:|---:|",
            "| emoji | 3 | 58.33 ± 35.28 |",
            "| orbit | 1 | 100.00 ± 0.00 |",
            "| x | 1 | 30.00 ± 0.00 |",
            "",
            "| Model | Source | Tasks | Accuracy (%) ± 95% CI |",
            "|---|---|---:|---:|",
            "| emoji | a | 2 | 37.50 ± 17.32 |",
            "| emoji | b | 1 | 100.00 ± 0.00 |",
            "| emoji | average over 2 sources | 3 | 68.75 |",
            "",
            "| Model | Averaged | frame accuracy (%)"
            " | frames to recognition (%) | video accuracy (%) |",
            "|---|---|---:|---:|---:|",
            "| orbit | per video: mean over 1 videos"
            " | 100.00 ± 0.00 | 0.00 ± 0.00 | 100.00 ± 0.00 |",
            "| orbit | per user: mean of each user's video means, over 1 users"
            " | 100.00 ± 0.00 | 0.00 ± 0.00 | 100.00 ± 0.00 |",
            "| orbit | per user: each user's frames pooled, mean over 1 users"
            " | 100.00 ± 0.00 | - | - |",
            "| orbit | per task: mean of each task's video means, over 1 tasks"
            " | 100.00 ± 0.00 | 0.00 ± 0.00 | 100.00 ± 0.00 |",
        ]
    )
    + "\n"
)


def test_the_results_tables_are_written_line_for_line():
    accuracies = [0.5, 1.0, 0.25]
    plain = EvaluationResult(
        accuracies,
        mean_with_ci(accuracies),
        sources=summarise_sources(accuracies, ["a", "b", "a"]),
    )
    videos = evaluate(_FixedPredictions(), [_video_task([2, 2], [2, 2], [4, 4])], progress=False)
    single = EvaluationResult([0.3], mean_with_ci([0.3]))
    assert results_table({"emoji": plain, "orbit": videos, "x": single}) == EXPECTED_REPORT


def test_markdown_tables_align_the_chosen_columns_right():
    rows = [{"name": "a", "n": 3, "mean": 0.12345}, {"name": "b", "mean": 1234.5}]
    assert markdown_table(rows, right_aligned=("n", "mean")) == (
        "| name | n | mean |\n|---|---:|---:|\n| a | 3 | 0.123 |\n| b |  | 1,234 |\n"
    )
