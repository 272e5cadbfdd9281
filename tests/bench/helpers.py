"""Tiny settings for the benchmark commands and a reader of the files each writes."""

from __future__ import annotations

import csv
from pathlib import Path

TINY_MODEL = ["--backbone", "resnet18", "--no-pretrained"]
TINY_EMOJI_TASK = ["--size", "32", "--way", "2", "--shot", "2", "--queries", "1"]


def written_outputs(directory: Path, name: str) -> tuple[list[dict[str, str]], str]:
    """The rows of ``<name>.csv`` and the text of ``<name>.md`` in ``directory``, once all
    three files a benchmark writes are there: the table not empty, the plot a PNG image."""
    paths = [directory / f"{name}.{kind}" for kind in ("csv", "md", "png")]
    assert paths[1].read_text().strip()
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "the plot is not a PNG image"
    with paths[0].open() as handle:
        return list(csv.DictReader(handle)), paths[1].read_text()
