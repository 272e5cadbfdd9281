"""The device helpers of the base layer: choosing, placing, waiting, timing."""

import time

import torch
from torch import nn

from litemeta.device import Stopwatch, pick_device, place_on_device, synchronize


def test_the_stopwatch_counts_the_time_since_it_started():
    clock = Stopwatch(torch.device("cpu"))
    time.sleep(0.05)
    first = clock.elapsed()
    assert first >= 0.05
    assert clock.elapsed() >= first
    assert clock.host_elapsed() >= first  # on the CPU nothing is left queued


def test_on_the_cpu_placing_stores_channels_last_and_synchronising_returns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(local_rank=3) == torch.device("cpu")
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2))
    assert place_on_device(module, torch.device("cpu")) is module
    assert module[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not module[0].weight.is_contiguous()
    assert module[1].weight.is_contiguous()  # only 4-d tensors have a channels-last layout
    synchronize(torch.device("cpu"))
    synchronize()
