"""An ORBIT evaluation under the 2021 protocol (the ORBIT and LITE papers' code), checked
against the same computation written out by hand in numpy: 8-frame clips whose features are
the mean of their frames' features, a classifier built from context clip features, one
prediction per target frame from the clip of its 8 latest frames, and the per-video and
per-user figures as microsoft/ORBIT-Dataset 01b7448 computes them."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from litemeta.backbones import Backbone
from litemeta.data import OrbitDataset, OrbitTaskDataset, OrbitTaskSampler
from litemeta.evaluation import evaluate
from litemeta.learners.protonets import ProtoNets
from tests.data.test_orbit import write_orbit

# Clean videos of 57-63 frames pad to exactly 8 clips of 8, so the 2021 protocol's 8 random
# context clips are all of them; target videos of any length, 16 padding to 24.
LAYOUT = {
    "P1": {"jar": ([60, 57], [16, 11]), "key": ([63], [9])},
    "P2": {"cup": ([61], [13]), "pen": ([59, 62], [20]), "mug": ([58], [8])},
}
TASKS_PER_USER = 2
CLIP = 8


class MeanColour(nn.Module):
    """A backbone whose feature is an image's mean colour."""

    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def _frame_features(video: Path) -> np.ndarray:
    """Each frame's mean colour in 0..1, read with PIL, in frame order."""
    frames = sorted(video.glob("*.jpg"))
    colours = [np.asarray(Image.open(f), dtype=np.float64).mean((0, 1)) for f in frames]
    return np.stack(colours) / 255


def _padded_2021(frames: np.ndarray) -> np.ndarray:
    """ORBIT 01b7448 sample_clips_from_a_video: first 1,000 frames, then clip_length - spare
    copies of the last one (a whole clip when none are spare)."""
    frames = frames[:1000]
    return np.concatenate([frames, np.repeat(frames[-1:], CLIP - len(frames) % CLIP, axis=0)])


def _by_hand(root: Path) -> tuple[dict[str, list[tuple[float, float, float]]], list[float]]:
    """Per user, (frame accuracy, frames-to-recognition, video accuracy) of every target video
    of every task; and each task's accuracy over its scored frames."""
    scores: dict[str, list[tuple[float, float, float]]] = {}
    task_accuracies = []
    for user in sorted(LAYOUT):
        objects = sorted(LAYOUT[user])
        prototypes = []
        for obj in objects:
            clips = []
            for video in sorted((root / "test" / user / obj / "clean").iterdir()):
                padded = _padded_2021(_frame_features(video))
                assert len(padded) == 8 * CLIP
                clips.extend(padded.reshape(8, CLIP, 3).mean(axis=1))  # clip features
            prototypes.append(np.mean(clips, axis=0))
        prototypes_array = np.stack(prototypes)
        videos, right, total = [], 0, 0
        for label, obj in enumerate(objects):
            for video in sorted((root / "test" / user / obj / "clutter").iterdir()):
                padded = _padded_2021(_frame_features(video))
                history = np.concatenate([np.repeat(padded[:1], CLIP - 1, axis=0), padded])
                windows = np.stack([history[t : t + CLIP] for t in range(len(padded))])
                features = windows.mean(axis=1)
                distances = ((features[:, None] - prototypes_array[None]) ** 2).sum(-1)
                predicted = distances.argmin(axis=1)
                correct = predicted == label
                first = np.flatnonzero(correct)
                ftr = first[0] / len(predicted) if len(first) else 1.0
                video_accuracy = float(np.bincount(predicted).argmax() == label)
                videos.append((correct.mean(), ftr, video_accuracy))
                right, total = right + correct.sum(), total + len(correct)
        scores[user] = videos * TASKS_PER_USER  # the same targets, the same context clips
        task_accuracies += [right / total] * TASKS_PER_USER
    return scores, task_accuracies


def test_lite_2021_evaluation_pools_clip_features_and_scores_users_as_orbit(tmp_path):
    root = write_orbit(tmp_path, "test", LAYOUT, size=4)
    backbone = Backbone(MeanColour(), name="mean-colour", image_size=4, mean=(0,) * 3, std=(1,) * 3)
    learner = ProtoNets(backbone)
    sampler = OrbitTaskSampler(protocol="lite-2021")
    tasks = OrbitTaskDataset(OrbitDataset(root, "test"), sampler, tasks_per_user=TASKS_PER_USER)
    first = tasks[0]
    assert first.support_clips is not None and first.support_clips.shape == (3 * 8, CLIP)
    assert first.query_clips is not None and first.query_clips.shape == (24 + 16 + 16, CLIP)

    result = evaluate(learner, tasks, query_batch_size=7, progress=False)

    scores, task_accuracies = _by_hand(root)
    assert result.task_accuracies == pytest.approx(task_accuracies)
    orbit = result.orbit
    assert orbit is not None and orbit.users == ["P1", "P2"]
    metrics = ("frame_accuracy", "frames_to_recognition", "video_accuracy")
    for user, per_user in zip(orbit.users, orbit.per_user, strict=True):
        expected = np.mean(scores[user], axis=0)
        assert [per_user[m] for m in metrics] == pytest.approx(expected.tolist())
    user_means = np.array([np.mean(scores[u], axis=0) for u in orbit.users])
    all_videos = np.array([v for u in orbit.users for v in scores[u]])
    for column, metric in enumerate(metrics):
        # ORBIT's interval: 1.96 * np.std (population) / sqrt(n)
        users = orbit.over_users[metric]
        assert users.mean == pytest.approx(user_means[:, column].mean())
        assert users.ci95 == pytest.approx(1.96 * user_means[:, column].std() / np.sqrt(2))
        videos = orbit.over_videos[metric]
        assert videos.mean == pytest.approx(all_videos[:, column].mean())
        assert videos.n == len(all_videos) == (3 + 3) * TASKS_PER_USER
    assert 0 < orbit.over_videos["frame_accuracy"].mean < 1, "a test that can tell them apart"
