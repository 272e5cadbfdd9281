"""Where the web app keeps recognisers: an SQLite database for metadata, image files on disk.

Image files are named by random ids (never by user text), written to a temporary file,
flushed and renamed into place before their row is committed, so a killed server loses at
most the request in flight. One process at a time holds a store (a lock file); on open it
removes its own files that have no row (from such a request) and leaves every other file
alone, naming them in a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from litemeta.serve.records import (
    Example,
    NotFound,
    Recogniser,
    StoreError,
    Taught,
    check_name,
    normalise_name,
)
from litemeta.serve.store_lock import hold

__all__ = ["Store", "default_store_dir"]

#: The extensions of the image files the store writes.
IMAGE_EXTENSIONS = (".jpg", ".png", ".webp", ".gif", ".bmp")
_ID = "[0-9a-f]{32}"
_EXTENSION = "|".join(re.escape(e) for e in IMAGE_EXTENSIONS)
#: The files the store writes under ``images/``: ``<recogniser id>/<example id><extension>``
#: and, while one is being written, ``<recogniser id>/.<example id><extension>.tmp``.
OWN_FILE = re.compile(f"{_ID}/(?:{_ID}(?:{_EXTENSION})|\\.{_ID}(?:{_EXTENSION})\\.tmp)")
OWN_FOLDER = re.compile(_ID)
#: How many files the warning about files the store did not write names.
NAMED_FOREIGN_FILES = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recognisers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    taught TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    threshold REAL
);
CREATE TABLE IF NOT EXISTS classes (
    recogniser_id TEXT NOT NULL REFERENCES recognisers(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (recogniser_id, label)
);
CREATE TABLE IF NOT EXISTS examples (
    id TEXT PRIMARY KEY,
    recogniser_id TEXT NOT NULL,
    label TEXT NOT NULL,
    file TEXT NOT NULL,
    media_type TEXT NOT NULL,
    created REAL NOT NULL,
    FOREIGN KEY (recogniser_id, label) REFERENCES classes(recogniser_id, label)
        ON DELETE CASCADE ON UPDATE CASCADE
);
"""


def default_store_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/litemeta/serve`` (``~/.local/share`` if
    unset), ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "litemeta" / "serve"


class Store:
    """Recognisers, classes and example images under ``root`` (created if missing).

    Safe to share between threads. Any change to a recogniser's classes or examples forgets
    what it was taught and raises its version, so a prediction never uses examples that are
    no longer shown, and a teaching that overlapped a change is not recorded.
    """

    def __init__(self, root: str | Path, holder: str = "litemeta") -> None:
        """Open (or create) the store and hold its lock until ``close``; ``StoreInUse``,
        naming the holder, if another process holds it. ``holder`` says who holds it, for
        that message (e.g. ``litemeta serve http://127.0.0.1:8000/``)."""
        self.root = Path(root)
        self.images = self.root / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._holding = hold(self.root / "store.lock", holder)
        try:
            self._db = _open_database(self.root / "store.sqlite3")
            self._remove_orphan_files()
        except BaseException:
            self._holding.close()
            raise

    def close(self) -> None:
        """Close the database and let another process open the store."""
        self._db.close()
        self._holding.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    @staticmethod
    def _changed(db: sqlite3.Connection, recogniser_id: str) -> None:
        """Forget what the recogniser was taught and raise its version."""
        db.execute(
            "UPDATE recognisers SET taught = NULL, version = version + 1 WHERE id = ?",
            (recogniser_id,),
        )

    def _remove_orphan_files(self) -> None:
        """Remove the store's own files that have no row (written by a request that did not
        finish) and its empty folders of deleted recognisers; warn about files it did not
        write, which it leaves alone. Runs only while the store's lock is held."""
        with self._lock:
            known = {
                Path(row[0]).as_posix() for row in self._db.execute("SELECT file FROM examples")
            }
            recognisers = {row[0] for row in self._db.execute("SELECT id FROM recognisers")}
        foreign = []
        for folder, _, files in os.walk(self.images):
            for name in files:
                path = Path(folder) / name
                relative = path.relative_to(self.images).as_posix()
                if not OWN_FILE.fullmatch(relative):
                    foreign.append(relative)
                elif relative not in known:
                    path.unlink(missing_ok=True)
        for folder in self.images.iterdir():
            if OWN_FOLDER.fullmatch(folder.name) and folder.name not in recognisers:
                _remove_own_files(folder)
        if foreign:
            named = ", ".join(sorted(foreign)[:NAMED_FOREIGN_FILES])
            more = len(foreign) - NAMED_FOREIGN_FILES
            warnings.warn(
                f"{self.images} holds {len(foreign)} file(s) litemeta did not write, left "
                f"untouched: {named}{f' and {more} more' if more > 0 else ''}; move them out "
                "of the store to silence this warning",
                stacklevel=3,
            )

    # Recognisers

    def create(self, name: str) -> str:
        name = check_name(name, "recogniser name")
        recogniser_id = uuid.uuid4().hex
        with self._transaction() as db:
            db.execute(
                "INSERT INTO recognisers (id, name, created) VALUES (?, ?, ?)",
                (recogniser_id, name, time.time()),
            )
        return recogniser_id

    def recognisers(self) -> list[Recogniser]:
        with self._lock:
            ids = [
                row[0] for row in self._db.execute("SELECT id FROM recognisers ORDER BY created")
            ]
            return [self.get(i) for i in ids]

    def _require(self, recogniser_id: str) -> None:
        """``NotFound`` unless the recogniser exists."""
        with self._lock:
            query = "SELECT 1 FROM recognisers WHERE id = ?"
            if self._db.execute(query, (recogniser_id,)).fetchone() is None:
                raise NotFound(f"no recogniser with id {recogniser_id!r}; reload the list")

    def get(self, recogniser_id: str) -> Recogniser:
        with self._lock:
            self._require(recogniser_id)
            row = self._db.execute(
                "SELECT name, created, taught, version, threshold FROM recognisers WHERE id = ?",
                (recogniser_id,),
            ).fetchone()
            classes: dict[str, list[Example]] = {
                label: []
                for (label,) in self._db.execute(
                    "SELECT label FROM classes WHERE recogniser_id = ? ORDER BY position",
                    (recogniser_id,),
                )
            }
            for example_id, label, file, media_type in self._db.execute(
                "SELECT id, label, file, media_type FROM examples WHERE recogniser_id = ? "
                "ORDER BY created, id",
                (recogniser_id,),
            ):
                classes[label].append(Example(example_id, label, self.images / file, media_type))
        taught = None if row[2] is None else Taught(**json.loads(row[2]))
        return Recogniser(recogniser_id, row[0], row[1], classes, taught, row[3], row[4])

    def delete(self, recogniser_id: str) -> None:
        recogniser = self.get(recogniser_id)
        with self._transaction() as db:
            db.execute("DELETE FROM recognisers WHERE id = ?", (recogniser_id,))
            db.execute("DELETE FROM examples WHERE recogniser_id = ?", (recogniser_id,))
            db.execute("DELETE FROM classes WHERE recogniser_id = ?", (recogniser_id,))
        for examples in recogniser.classes.values():
            for example in examples:
                example.path.unlink(missing_ok=True)
        _remove_own_files(self.images / recogniser_id)

    def set_taught(self, recogniser_id: str, taught: Taught | None, version: int) -> bool:
        """Record ``taught`` if the recogniser is still at ``version``; False if it changed."""
        text = None if taught is None else json.dumps(vars(taught))
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE recognisers SET taught = ? WHERE id = ? AND version = ?",
                (text, recogniser_id, version),
            ).rowcount
        if not updated:
            self._require(recogniser_id)
        return bool(updated)

    def set_threshold(self, recogniser_id: str, threshold: float | None) -> None:
        """Keep the user's "none of these" threshold (``None``: back to the calibrated
        one); what the recogniser was taught stays."""
        with self._transaction() as db:
            db.execute(
                "UPDATE recognisers SET threshold = ? WHERE id = ?", (threshold, recogniser_id)
            )
        self._require(recogniser_id)

    # Classes

    def _label_taken(self, db: sqlite3.Connection, recogniser_id: str, label: str) -> str | None:
        """The existing label that equals ``label`` ignoring case, if any."""
        for (existing,) in db.execute(
            "SELECT label FROM classes WHERE recogniser_id = ?", (recogniser_id,)
        ):
            if existing.casefold() == label.casefold():
                return existing
        return None

    def _add_class(self, db: sqlite3.Connection, recogniser_id: str, label: str) -> bool:
        """Add class ``label`` unless it exists; True if added. ``ValueError`` if a class
        with the same label in another case exists, ``NotFound`` without the recogniser."""
        self._require(recogniser_id)
        existing = self._label_taken(db, recogniser_id, label)
        if existing == label:
            return False
        if existing is not None:
            raise ValueError(
                f"a class {existing!r} exists already; use that label or pick another name"
            )
        db.execute(
            "INSERT INTO classes (recogniser_id, label, position) VALUES (?, ?, "
            "(SELECT COALESCE(MAX(position), -1) + 1 FROM classes WHERE recogniser_id = ?))",
            (recogniser_id, label, recogniser_id),
        )
        return True

    def add_class(self, recogniser_id: str, label: str) -> str:
        """Add class ``label`` (a no-op when it exists); returns the checked label."""
        label = check_name(label, "class label")
        with self._transaction() as db:
            if self._add_class(db, recogniser_id, label):
                self._changed(db, recogniser_id)
        return label

    def _classes(self, recogniser_id: str, label: str) -> tuple[str, dict[str, list[Example]]]:
        """``label`` as stored (normalised) and the recogniser's classes; ``NotFound`` if it
        has no such class."""
        label = normalise_name(label)
        classes = self.get(recogniser_id).classes
        if label not in classes:
            raise NotFound(f"the recogniser has no class {label!r}; reload the page")
        return label, classes

    def rename_class(self, recogniser_id: str, label: str, new_label: str) -> str:
        """Rename class ``label`` (a no-op when the name is unchanged); returns the new label."""
        new_label = check_name(new_label, "class label")
        with self._transaction() as db:
            label, _ = self._classes(recogniser_id, label)
            if new_label == label:
                return new_label
            existing = self._label_taken(db, recogniser_id, new_label)
            if existing is not None and existing != label:
                raise ValueError(f"a class {existing!r} exists already; pick another name")
            db.execute(
                "UPDATE classes SET label = ? WHERE recogniser_id = ? AND label = ?",
                (new_label, recogniser_id, label),
            )
            self._changed(db, recogniser_id)
        return new_label

    def delete_class(self, recogniser_id: str, label: str) -> None:
        label, classes = self._classes(recogniser_id, label)
        with self._transaction() as db:
            db.execute(
                "DELETE FROM examples WHERE recogniser_id = ? AND label = ?", (recogniser_id, label)
            )
            db.execute(
                "DELETE FROM classes WHERE recogniser_id = ? AND label = ?", (recogniser_id, label)
            )
            self._changed(db, recogniser_id)
        for example in classes[label]:
            example.path.unlink(missing_ok=True)

    # Examples

    def add_examples(
        self,
        recogniser_id: str,
        label: str,
        images: list[tuple[bytes, str, str]],
        create: bool = True,
    ) -> dict[str, int]:
        """Store ``(data, extension, media type)`` images as examples of ``label`` (created if
        new and ``create``), all or none; returns the number of examples per class.
        ``NotFound`` (and nothing left behind) if the recogniser is deleted meanwhile, or
        without ``create`` if it has no class ``label``."""
        label = check_name(label, "class label")
        unknown = sorted({e for _, e, _ in images if e not in IMAGE_EXTENSIONS})
        if unknown:
            raise ValueError(
                f"cannot store images with extension {', '.join(unknown)}; use one of "
                f"{', '.join(IMAGE_EXTENSIONS)}"
            )
        self._require(recogniser_id)
        folder = self.images / recogniser_id
        rows, written = [], []
        try:
            folder.mkdir(exist_ok=True)
            for data, extension, media_type in images:
                example_id = uuid.uuid4().hex
                path = folder / f"{example_id}{extension}"
                _write_atomically(path, data)
                written.append(path)
                relative = str(path.relative_to(self.images))
                rows.append((example_id, recogniser_id, label, relative, media_type, time.time()))
            with self._transaction() as db:
                if self._add_class(db, recogniser_id, label) and not create:
                    raise NotFound(
                        f"the recogniser has no class {label!r} (deleted elsewhere?); reload "
                        "the page"
                    )
                db.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._changed(db, recogniser_id)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            try:
                self._require(recogniser_id)
            except NotFound:  # deleted meanwhile: its folder goes too
                _remove_own_files(folder)
                raise
            raise
        return self.counts(recogniser_id)

    def counts(self, recogniser_id: str) -> dict[str, int]:
        return {label: len(e) for label, e in self.get(recogniser_id).classes.items()}

    def example(self, recogniser_id: str, example_id: str) -> Example:
        for examples in self.get(recogniser_id).classes.values():
            for example in examples:
                if example.id == example_id:
                    return example
        raise NotFound(f"no example {example_id!r} in this recogniser; reload the page")

    def delete_example(self, recogniser_id: str, example_id: str) -> None:
        example = self.example(recogniser_id, example_id)
        with self._transaction() as db:
            db.execute("DELETE FROM examples WHERE id = ?", (example_id,))
            self._changed(db, recogniser_id)
        example.path.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    if os.name == "posix":  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _remove_own_files(folder: Path) -> None:
    """Remove the store's files from a recogniser's ``folder``, and the folder if that
    leaves it empty; files the store did not write stay (the sweep on open names them)."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for path in folder.iterdir():
        if OWN_FILE.fullmatch(f"{folder.name}/{path.name}"):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty, or already gone
        folder.rmdir()


def _open_database(path: Path) -> sqlite3.Connection:
    """The store's database, created or brought up to date; ``StoreError`` naming the file
    if it is not a database."""
    db = sqlite3.connect(path, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(recognisers)")}
        if "version" not in columns:  # a store made before versions were kept
            db.execute("ALTER TABLE recognisers ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        if "threshold" not in columns:  # a store made before users set thresholds
            db.execute("ALTER TABLE recognisers ADD COLUMN threshold REAL")
    except sqlite3.DatabaseError as error:
        db.close()
        raise StoreError(
            f"cannot open the store's database {path}: {error}; restore it from a backup, or "
            f"move it aside (e.g. to {path.name}.damaged) to start an empty store there"
        ) from None
    return db
