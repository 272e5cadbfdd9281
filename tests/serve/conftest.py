"""A tiny trained run and small coloured photos shared by the web app's tests."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.cli_helpers import train_tiny_run

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (40, 50, 220)}


def photo(
    colour: tuple[int, int, int], variant: int = 0, size: int = 40, kind: str = "PNG"
) -> bytes:
    """A small photo of ``colour`` with a darker square whose place depends on ``variant``."""
    image = Image.new("RGB", (size, size), colour)
    shade = tuple(max(0, c - 60) for c in colour)
    corner = (variant * 7) % (size // 2)
    image.paste(shade, (corner, corner, corner + size // 3, corner + size // 3))
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A ProtoNets run (random ResNet-18, 32 px) after one meta-training step, with a
    distance scale that keeps its probabilities away from uniform."""
    return train_tiny_run(
        tmp_path_factory.mktemp("serve-run") / "run",
        "model.learner_options.protonets.distance_scale=0.3",
        "training.lite.h=null",
    )
