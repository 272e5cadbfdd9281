"""The task stream's addresses: which positions each process uses in each step, and the
seeds of independent generators."""

from __future__ import annotations

import hashlib

import pytest
import torch

from litemeta.training.task_stream import seeded_generator, stream_index


@pytest.mark.parametrize(("world_size", "tasks_per_step"), [(1, 4), (2, 2), (4, 1), (3, 5)])
def test_processes_share_out_each_steps_positions_with_no_gap_or_overlap(
    world_size, tasks_per_step
):
    per_step = world_size * tasks_per_step
    for step in range(3):
        positions = [
            stream_index(
                step=step,
                rank=rank,
                world_size=world_size,
                tasks_per_step=tasks_per_step,
                task=task,
            )
            for rank in range(world_size)
            for task in range(tasks_per_step)
        ]
        # rank by rank: rank r takes the r-th block of tasks_per_step positions of the step
        assert positions == list(range(step * per_step, (step + 1) * per_step))


def test_one_process_sees_the_tasks_that_several_share():
    """Two processes with 3 tasks per step draw, step by step, the positions that one
    process with 6 tasks per step does."""
    one = [
        stream_index(step=s, rank=0, world_size=1, tasks_per_step=6, task=t)
        for s in range(4)
        for t in range(6)
    ]
    two = [
        stream_index(step=s, rank=r, world_size=2, tasks_per_step=3, task=t)
        for s in range(4)
        for r in range(2)
        for t in range(3)
    ]
    assert one == two == list(range(24))
    assert stream_index(step=5, rank=1, world_size=2, tasks_per_step=3, task=2) == 35


def test_a_generator_is_seeded_by_a_hash_of_the_seed_and_its_keys():
    generator = seeded_generator(7, "lite", 3)
    digest = hashlib.sha256(repr((7, "lite", 3)).encode()).digest()
    assert generator.initial_seed() == int.from_bytes(digest[:8], "little") >> 1
    assert generator.initial_seed() < 2**63  # a valid torch seed
    draws = torch.rand(3, generator=generator)
    assert torch.equal(draws, torch.rand(3, generator=seeded_generator(7, "lite", 3)))
    assert (
        seeded_generator(7, "lite", 3).initial_seed()
        != seeded_generator(8, "lite", 3).initial_seed()
    )
