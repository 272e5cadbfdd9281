"""Tasks through a DataLoader: order, worker independence, decoded-image cache, stored size."""

from __future__ import annotations

import pytest
import torch

from litemeta.data import EpisodicTaskDataset, FixedWaySampler, load_emoji
from litemeta.data.loading import default_workers, resolve_workers, task_loader


def _emoji_tasks(collection):
    return EpisodicTaskDataset(
        collection, FixedWaySampler(way=5, shot=2, query=1), num_tasks=6, seed=3
    )


def _same(a, b) -> bool:
    return (
        all(
            torch.equal(getattr(a, name), getattr(b, name))
            for name in ("support_images", "support_labels", "query_images", "query_labels")
        )
        and a.class_names == b.class_names
    )


def test_tasks_come_in_the_order_asked_whatever_the_workers():
    tasks = _emoji_tasks(load_emoji("validation", decode_size=32))
    order = [4, 0, 5, 2]
    serial = list(task_loader(tasks, order, workers=0))
    parallel = list(task_loader(tasks, order, workers=2))
    assert len(serial) == len(parallel) == 4
    assert all(_same(a, b) for a, b in zip(serial, parallel, strict=True))
    assert all(_same(task, tasks[index]) for task, index in zip(serial, order, strict=True))
    assert not _same(serial[0], serial[1])
    functional = list(task_loader(tasks.__getitem__, order, workers=2))
    assert all(_same(a, b) for a, b in zip(serial, functional, strict=True))


def test_decoded_cache_gives_the_same_images_and_decodes_each_once(monkeypatch):
    plain, cached = load_emoji("validation"), load_emoji("validation")
    cached.cache_decoded()
    decoded = []
    read_item = type(cached).read_item

    def counting(self, class_id, item):
        decoded.append((class_id, item, self.decode_size))
        return read_item(self, class_id, item)

    monkeypatch.setattr(type(cached), "read_item", counting)
    first = [_emoji_tasks(cached)[i] for i in range(6)]
    reads = len(decoded)
    again = [_emoji_tasks(cached)[i] for i in range(6)]
    assert len(decoded) == reads == len(set(decoded))  # nothing decoded twice
    monkeypatch.undo()
    reference = [_emoji_tasks(plain)[i] for i in range(6)]
    assert all(_same(a, b) and _same(b, c) for a, b, c in zip(first, again, reference, strict=True))


def test_stored_size_is_kept_when_no_decode_size_is_given():
    task = _emoji_tasks(load_emoji("validation"))[0]
    assert task.support_images.shape[1:] == (3, 64, 64)  # the built-in set is stored at 64 px
    resized = _emoji_tasks(load_emoji("validation", decode_size=40))[0]
    assert resized.support_images.shape[1:] == (3, 40, 40)
    with pytest.raises(ValueError, match="decode_size must be a positive number"):
        load_emoji("validation", decode_size=0)


def test_worker_settings():
    assert default_workers(torch.device("cpu")) == 0
    assert default_workers(torch.device("cuda")) >= 1
    assert resolve_workers("auto", torch.device("cpu")) == 0
    assert resolve_workers(3, torch.device("cpu")) == 3
    with pytest.raises(ValueError, match="workers must be"):
        resolve_workers(-1, torch.device("cpu"))
