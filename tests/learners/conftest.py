"""Fixtures for the learner tests."""

import pytest

from .helpers import colour_task


@pytest.fixture
def task():
    return colour_task(way=3, shots=4, queries=6)
