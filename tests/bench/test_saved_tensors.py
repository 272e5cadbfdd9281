"""SavedTensorMeter counts each saved storage once, while its graph lives."""

import torch

from litemeta.bench.saved_tensors import SavedTensorMeter


def test_counts_a_storage_once_and_releases_it_with_the_graph():
    weight = torch.randn(1000, requires_grad=True)
    meter = SavedTensorMeter(exclude=[weight])
    with meter.watching():
        hidden = weight.exp()  # saves its output: 4000 bytes
        loss = (hidden * hidden).sum()  # saves the same storage twice
        assert meter.current_bytes == 4000
        loss.backward()
    assert meter.peak_bytes == 4000
    assert meter.current_bytes == 0


def test_excluded_tensors_are_not_counted():
    weight = torch.randn(10, 10, requires_grad=True)
    inputs = torch.randn(4, 10)
    meter = SavedTensorMeter(exclude=[weight])
    with meter.watching():
        (inputs @ weight).sum().backward()  # saves inputs (counted) and weight (excluded)
    assert meter.peak_bytes == inputs.numel() * 4
