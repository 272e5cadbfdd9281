"""Fixtures for the learner tests."""

import pytest
import torch

from .helpers import colour_task


@pytest.fixture
def task():
    return colour_task(way=3, shots=4, queries=6)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and stay fast when other jobs share the CPU
    (several threads then wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
