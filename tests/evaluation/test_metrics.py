import math

import pytest
import torch

from litemeta.evaluation import (
    frames_to_recognition,
    mean_with_ci,
    score_video,
    score_videos,
    summarise_orbit,
    video_prediction,
)


def test_mean_with_ci_by_hand():
    # mean 0.75; population std = sqrt((0.25^2 + 0.25^2 + 0 + 0) / 4) = sqrt(0.03125)
    summary = mean_with_ci([0.5, 1.0, 0.75, 0.75])
    assert summary.mean == pytest.approx(0.75)
    assert summary.ci95 == pytest.approx(1.96 * math.sqrt(0.03125) / 2)
    assert summary.n == 4
    assert mean_with_ci([0.3]).ci95 == 0.0
    with pytest.raises(ValueError, match="empty"):
        mean_with_ci([])


def test_single_video_metrics_by_hand():
    # label 0, predictions 1 0 0 2: frames 2/4 right, first right at index 1 -> FTR 1/4,
    # most frequent prediction 0 -> video right.
    score = score_video([1, 0, 0, 2], label=0)
    assert score.frame_accuracy == 0.5
    assert score.frames_to_recognition == 0.25
    assert score.video_accuracy == 1.0
    assert frames_to_recognition([3, 3, 3], label=1) == 1.0  # never recognised
    assert frames_to_recognition([1, 0], label=1) == 0.0  # right from the first frame
    assert video_prediction([1, 0]) == 0  # a tie goes to the smallest class index
    assert score_video([1, 0], label=1).video_accuracy == 0.0


def test_score_videos_groups_interleaved_frames_in_order():
    # video 5 gets frames 0, 1, 3 (predictions 2, 1, 1), video 7 gets frames 2, 4 (0, 0)
    predictions = torch.tensor([2, 1, 0, 1, 0])
    labels = torch.tensor([1, 1, 0, 1, 0])
    groups = torch.tensor([5, 5, 7, 5, 7])
    first, second = score_videos(predictions, labels, groups)
    assert (first.frame_accuracy, first.frames_to_recognition, first.video_accuracy) == (
        pytest.approx(2 / 3),
        pytest.approx(1 / 3),
        1.0,
    )
    assert (second.frame_accuracy, second.frames_to_recognition, second.video_accuracy) == (
        1.0,
        0.0,
        1.0,
    )
    with pytest.raises(ValueError, match="different labels"):
        score_videos(predictions, torch.tensor([1, 0, 0, 1, 0]), groups)


def test_orbit_summary_by_hand():
    user_a = [score_video([1, 0, 0, 2], 0), score_video([0, 0, 2], 1)]
    user_b = [score_video([2, 2], 2)]
    # per video: frame acc 0.5, 0, 1; FTR 0.25, 1, 0; video acc 1, 0, 1
    summary = summarise_orbit([user_a, user_b])
    assert summary.per_user[0] == pytest.approx(
        {"frame_accuracy": 0.25, "frames_to_recognition": 0.625, "video_accuracy": 0.5}
    )
    assert summary.per_user[1] == pytest.approx(
        {"frame_accuracy": 1.0, "frames_to_recognition": 0.0, "video_accuracy": 1.0}
    )
    users = summary.over_users["frame_accuracy"]
    # users 0.25 and 1.0: mean 0.625, population std 0.375
    assert (users.mean, users.ci95, users.n) == (
        pytest.approx(0.625),
        pytest.approx(1.96 * 0.375 / math.sqrt(2)),
        2,
    )
    videos = summary.over_videos["frame_accuracy"]
    # videos 0.5, 0, 1: mean 0.5, population std sqrt(1/6)
    assert (videos.mean, videos.ci95, videos.n) == (
        pytest.approx(0.5),
        pytest.approx(1.96 * math.sqrt(1 / 6) / math.sqrt(3)),
        3,
    )
    assert summary.over_videos["frames_to_recognition"].mean == pytest.approx(1.25 / 3)
    assert summary.over_videos["video_accuracy"].mean == pytest.approx(2 / 3)
    assert summary.over_users["video_accuracy"].mean == pytest.approx(0.75)


def test_orbit_pools_each_users_videos_over_their_tasks():
    task_a1 = [score_video([1, 0, 0, 2], 0), score_video([0, 0, 2], 1)]  # frame acc 0.5, 0
    task_b = [score_video([2, 2], 2)]  # frame acc 1
    task_a2 = [score_video([1, 1], 1)]  # frame acc 1
    summary = summarise_orbit([task_a1, task_b, task_a2], users=["A", "B", "A"])
    assert summary.users == ["A", "B"]
    # A's three videos pooled: frame acc (0.5 + 0 + 1) / 3, not the mean of its task means
    assert summary.per_user[0] == pytest.approx(
        {"frame_accuracy": 0.5, "frames_to_recognition": 1.25 / 3, "video_accuracy": 2 / 3}
    )
    users = summary.over_users["frame_accuracy"]
    assert (users.mean, users.ci95, users.n) == (
        pytest.approx(0.75),
        pytest.approx(1.96 * 0.25 / math.sqrt(2)),
        2,
    )
    tasks = summary.over_tasks["frame_accuracy"]  # task means 0.25, 1, 1
    assert (tasks.mean, tasks.ci95, tasks.n) == (
        pytest.approx(0.75),
        pytest.approx(1.96 * math.sqrt(0.125) / math.sqrt(3)),
        3,
    )
    assert summary.over_videos["frame_accuracy"].mean == pytest.approx(2.5 / 4)
    # ORBIT's code since Dec 2022 pools a user's frames: A has 2 + 0 + 2 right of 4 + 3 + 2
    frames = summary.over_user_frames
    assert (frames.mean, frames.n) == (pytest.approx((4 / 9 + 1) / 2), 2)
    with pytest.raises(ValueError, match="user of each task"):
        summarise_orbit([task_a1, task_b], users=["A"])
