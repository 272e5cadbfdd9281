"""Evaluation of few-shot learners: metrics (accuracy with a 95% confidence interval, the
ORBIT frame / video / frames-to-recognition metrics, the accuracy per source), the evaluate
loop, the report and its markdown tables, and a trained learner adapted to a user's support
set (:mod:`litemeta.evaluation.trained`).

Layer: imports the base, ``data`` (the task loader) and ``learners``; ``training`` and the
layers above import it.
"""

from litemeta.evaluation.loop import evaluate, predict_queries
from litemeta.evaluation.metrics import (
    ORBIT_METRICS,
    EvaluationResult,
    MeanCI,
    OrbitSummary,
    SourceSummary,
    VideoScore,
    frames_to_recognition,
    mean_with_ci,
    score_video,
    score_videos,
    summarise_orbit,
    summarise_sources,
    video_prediction,
)
from litemeta.evaluation.report import (
    format_cell,
    markdown_table,
    plot_results,
    results_table,
    write_report,
)

__all__ = [
    "ORBIT_METRICS",
    "EvaluationResult",
    "MeanCI",
    "OrbitSummary",
    "SourceSummary",
    "VideoScore",
    "evaluate",
    "format_cell",
    "frames_to_recognition",
    "markdown_table",
    "mean_with_ci",
    "plot_results",
    "predict_queries",
    "results_table",
    "score_video",
    "score_videos",
    "summarise_orbit",
    "summarise_sources",
    "video_prediction",
    "write_report",
]
