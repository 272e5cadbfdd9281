"""Fixtures shared by every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run fastest on one thread, and stay fast when other jobs share the CPU
    (several threads then wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
