"""What the hostile cases share: a tiny trained run and the one-line error check."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli_helpers import train_tiny_run, write_emoji


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny trained run (read only: copy it to change it)."""
    return train_tiny_run(tmp_path_factory.mktemp("hostile") / "run")


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """A support folder of two classes and a query folder of one image."""
    support, query = tmp_path / "support", tmp_path / "query"
    for class_id, folder in ((0, support / "a"), (1, support / "b"), (2, query)):
        write_emoji(folder, class_id, "google")
    return support, query


@pytest.fixture
def deadline():
    """Fail (not hang) a test whose command blocks for over a minute."""

    def expired(*_):
        raise TimeoutError("the command hung")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def one_line_error(capsys) -> str:
    """The one ``litemeta:`` line of stderr (and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("litemeta:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
