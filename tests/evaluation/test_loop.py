import numpy as np
import pytest
import torch
from train_helpers import SyntheticTasks, TinyProtoNet

from litemeta.evaluation import evaluate, mean_with_ci
from litemeta.tasks import Task


class _UserTasks(torch.utils.data.Dataset):
    """Tasks that know their user, like ORBIT's task datasets."""

    def __init__(self, tasks: list[Task], users: list[str]) -> None:
        self.tasks, self.users = tasks, users

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def user_of(self, index: int) -> str:
        return self.users[index]


class _FixedPredictions(TinyProtoNet):
    """Predicts, for query image i, the class stored in pixel [0, 0, 0] of that image."""

    def adapt(self, support_images, support_labels, *, lite=None, support_clips=None):
        assert not torch.is_grad_enabled() and lite is None and not self.training
        way = int(support_labels.max()) + 1

        def classify(query, clips=None):
            return torch.nn.functional.one_hot(query[:, 0, 0, 0].long(), way).float()

        return classify


def _video_task(predicted: list[int], labels: list[int], groups: list[int]) -> Task:
    query = torch.zeros(len(predicted), 3, 2, 2)
    query[:, 0, 0, 0] = torch.tensor(predicted, dtype=torch.float32)
    return Task(
        support_images=torch.zeros(3, 3, 2, 2),
        support_labels=torch.arange(3),
        query_images=query,
        query_labels=torch.tensor(labels),
        class_names=["a", "b", "c"],
        query_groups=torch.tensor(groups),
    )


def test_evaluate_scores_tasks_and_videos_with_batched_queries():
    tasks = [
        _video_task([1, 0, 0, 2, 0, 0, 2], [0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1]),
        _video_task([2, 2], [2, 2], [4, 4]),
    ]
    learner = _FixedPredictions()
    learner.train()
    result = evaluate(learner, tasks, query_batch_size=3, progress=False)
    assert learner.training  # mode restored
    assert result.task_accuracies == pytest.approx([2 / 7, 1.0])
    assert result.accuracy.mean == pytest.approx((2 / 7 + 1) / 2)
    assert result.orbit is not None
    assert result.orbit.over_videos["frame_accuracy"].mean == pytest.approx(0.5)
    assert result.orbit.over_users["frames_to_recognition"].mean == pytest.approx(0.3125)


def test_evaluate_pools_orbit_metrics_per_user_of_the_dataset():
    tasks = [
        _video_task([0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]),  # videos: acc 0.5 and 1
        _video_task([2, 2], [2, 2], [4, 4]),  # acc 1
        _video_task([0, 0], [1, 1], [5, 5]),  # acc 0
    ]
    result = evaluate(_FixedPredictions(), _UserTasks(tasks, ["A", "B", "A"]), progress=False)
    assert result.orbit is not None and result.orbit.users == ["A", "B"]
    assert result.orbit.per_user[0]["frame_accuracy"] == pytest.approx(1.5 / 3)
    assert result.orbit.over_users["frame_accuracy"].mean == pytest.approx((0.5 + 1) / 2)
    assert result.orbit.over_tasks["frame_accuracy"].mean == pytest.approx((0.75 + 1 + 0) / 3)
    same = evaluate(_FixedPredictions(), tasks, progress=False, users=["A", "B", "A"])
    assert same.orbit == result.orbit
    with pytest.raises(ValueError, match="users names 2 tasks"):
        evaluate(_FixedPredictions(), tasks, progress=False, users=["A", "B"])


def _nearest_prototype_accuracy(learner: TinyProtoNet, task: Task) -> float:
    """The accuracy of a prototypical network by hand, in numpy: class means of the support
    embeddings, each query labelled with its nearest mean."""
    with torch.no_grad():
        support = learner.embed(task.support_images).double().numpy()
        query = learner.embed(task.query_images).double().numpy()
    labels = task.support_labels.numpy()
    means = np.stack([support[labels == c].mean(axis=0) for c in range(task.way)])
    distances = ((query[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == task.query_labels.numpy()).mean())


def test_evaluate_tasks_without_videos_has_no_orbit_metrics():
    torch.manual_seed(0)
    learner = TinyProtoNet()
    tasks = [SyntheticTasks(query_per_class=7)(i) for i in range(3)]
    result = evaluate(learner, tasks, query_batch_size=5, progress=False)
    assert result.orbit is None
    expected = [_nearest_prototype_accuracy(learner, task) for task in tasks]
    assert result.task_accuracies == pytest.approx(expected)
    assert len(set(expected)) > 1, "tasks of different accuracies would show a mix-up"
    reference = mean_with_ci(expected)
    assert (result.accuracy.mean, result.accuracy.ci95, result.accuracy.n) == (
        pytest.approx(reference.mean),
        pytest.approx(reference.ci95),
        3,
    )
    with pytest.raises(ValueError, match="empty"):
        evaluate(learner, [], progress=False)
