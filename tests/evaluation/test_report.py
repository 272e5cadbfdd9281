import json

import pytest

from litemeta.evaluation import (
    EvaluationResult,
    evaluate,
    markdown_table,
    mean_with_ci,
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
    assert table == markdown_table({"emoji": plain, "orbit": videos})
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
