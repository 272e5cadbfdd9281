"""A task's ``query_misses`` (test images of classes without support images, as VTAB-1k's
SUN397 has) count as wrong predictions."""

import pytest
import torch
from train_helpers import TinyProtoNet

from litemeta.evaluation import evaluate
from litemeta.tasks import Task


class _PixelOracle(TinyProtoNet):
    """Predicts for each query image the class stored in its pixel [0, 0, 0]."""

    def adapt(self, support_images, support_labels, *, lite=None, support_clips=None):
        way = int(support_labels.max()) + 1
        return lambda query, clips=None: torch.nn.functional.one_hot(
            query[:, 0, 0, 0].long(), way
        ).float()


def _task(predicted: list[int], labels: list[int], misses: int) -> Task:
    query = torch.zeros(len(predicted), 3, 2, 2)
    query[:, 0, 0, 0] = torch.tensor(predicted, dtype=torch.float32)
    return Task(
        torch.zeros(2, 3, 2, 2),
        torch.tensor([0, 1]),
        query,
        torch.tensor(labels),
        ["a", "b"],
        query_misses=misses,
    )


def test_misses_are_wrong_predictions() -> None:
    # By hand: 3 of 4 scored queries right, plus 2 misses -> 3 / 6; without misses 3 / 4.
    tasks = [_task([0, 1, 1, 0], [0, 1, 1, 1], misses=2), _task([0, 1, 1, 0], [0, 1, 1, 1], 0)]
    result = evaluate(_PixelOracle(), tasks, progress=False)
    assert result.task_accuracies == [0.5, 0.75]


def test_negative_misses_are_refused() -> None:
    with pytest.raises(ValueError, match="query_misses must be >= 0, got -1"):
        _task([0], [0], misses=-1)
