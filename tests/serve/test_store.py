"""The store keeps what was committed when its process is killed, and nothing half-written."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from litemeta.serve.records import check_name
from litemeta.serve.store import Store
from tests.serve.conftest import COLOURS, photo

WRITER = """
import sys
from litemeta.serve.store import Store
store = Store(sys.argv[1])
recogniser = store.create("killed")
data = open(sys.argv[2], "rb").read()
print(recogniser, flush=True)
while True:
    store.add_examples(recogniser, "red", [(data, ".png", "image/png")] * 3)
"""


def test_a_killed_writer_leaves_only_whole_examples(tmp_path):
    image = tmp_path / "red.png"
    image.write_bytes(photo(COLOURS["red"]) * 200)  # big enough to be caught mid-write
    root = tmp_path / "store"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(image)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    recogniser = writer.stdout.readline().strip()
    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    store = Store(root)
    examples = store.get(recogniser).classes["red"]
    assert len(examples) >= 3 and len(examples) % 3 == 0  # whole requests only
    assert all(e.path.read_bytes() == image.read_bytes() for e in examples)
    on_disk = sorted(p for p in (root / "images").rglob("*") if p.is_file())
    assert on_disk == sorted(e.path for e in examples)


def test_files_without_a_row_are_removed_on_open(tmp_path):
    store = Store(tmp_path)
    recogniser = store.create("r")
    store.add_examples(recogniser, "red", [(photo(COLOURS["red"]), ".png", "image/png")])
    stray = tmp_path / "images" / recogniser / f".{'e' * 32}.png.tmp"  # as the store names it
    stray.write_bytes(b"\x89PNG")
    store.close()
    reopened = Store(tmp_path)
    assert not stray.exists()
    assert reopened.counts(recogniser) == {"red": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("../x", "contains /"),
        ("a\\b", "contains \\"),
        ("<img src=x>", "contains < >"),
        (".hidden", "starts with a dot"),
        ("tab\there", "control characters"),
        ("right\u202eto left", "control characters"),
        ("", "is empty"),
        (7, "must be text"),
    ],
)
def test_check_name_refuses_with_a_reason(text, message):
    with pytest.raises(ValueError, match="the label") as error:
        check_name(text, "label")
    assert message in str(error.value)


def test_check_name_keeps_ordinary_names():
    assert check_name("  Mug (blue), no. 2!  ", "label") == "Mug (blue), no. 2!"
    assert check_name("Café", "label") == "Café"
    assert check_name("\U0001f469\u200d\U0001f4bb", "label") == "\U0001f469\u200d\U0001f4bb"
    assert check_name("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "label")  # Persian


def test_a_store_made_before_versions_opens(tmp_path):
    store = Store(tmp_path)
    recogniser = store.create("r")
    store.close()
    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        db.execute("ALTER TABLE recognisers DROP COLUMN version")
    reopened = Store(tmp_path)
    assert reopened.get(recogniser).version == 0
    reopened.add_class(recogniser, "red")
    assert reopened.get(recogniser).version == 1
