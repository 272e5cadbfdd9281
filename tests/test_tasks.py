"""The Task record's validation."""

import pytest
import torch

from litemeta.tasks import Task


def _task(**changes) -> Task:
    fields = dict(
        support_images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
        support_labels=torch.tensor([0, 0, 1, 1]),
        query_images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
        query_labels=torch.tensor([0, 1]),
        class_names=["cat", "dog"],
    )
    fields.update(changes)
    return Task(**fields)


def test_valid_task_reports_its_way() -> None:
    assert _task().way == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"support_labels": torch.tensor([0, 0, 0, 0])}, r"without support images: \['dog'\]"),
        ({"support_labels": torch.tensor([0, 1, 2, 1])}, r"must lie in 0..1"),
        ({"query_images": torch.zeros(2, 1, 8, 8)}, "share channels and size"),
        ({"query_labels": torch.tensor([0])}, "one label per image"),
        ({"support_images": torch.zeros(4, 8, 8)}, r"\[n, channels, height, width\]"),
        ({"query_groups": torch.tensor([0])}, "one group id per query image"),
    ],
)
def test_inconsistent_task_says_what_is_wrong(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        _task(**changes)
