"""What the web app's store holds and answers: recognisers, their classes and examples,
what they were taught, the checks on names and labels, and the store's errors."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Example",
    "NotFound",
    "Recogniser",
    "StoreError",
    "StoreInUse",
    "Taught",
    "check_name",
    "normalise_name",
]

MAX_NAME_LENGTH = 64
#: Characters refused in names and labels: path separators (a label is part of its URL's
#: path) and markup. Apostrophes and ampersands ("it's", "Tom & Jerry") are fine: the page
#: sets labels as text only.
FORBIDDEN_CHARACTERS = set('/\\<>"`')
#: Invisible format characters that real text needs: zero-width joiner (emoji sequences)
#: and non-joiner (Persian, Indic scripts).
JOINERS = {"\u200c", "\u200d"}


class NotFound(LookupError):
    """A recogniser, class or example that does not exist."""


class StoreError(RuntimeError):
    """A store that cannot be opened: its database is damaged or not a database."""


class StoreInUse(StoreError):
    """A store already held by another process (or another ``Store`` of this one)."""


def normalise_name(text: str) -> str:
    """``text`` as names and labels are stored: NFC, without surrounding spaces."""
    return unicodedata.normalize("NFC", text).strip()


def check_name(text: object, what: str) -> str:
    """A recogniser name or class label, normalised; ``ValueError`` says what to change."""
    if not isinstance(text, str):
        raise ValueError(f"the {what} must be text")
    name = normalise_name(text)
    if not name:
        raise ValueError(f"the {what} is empty: type a few letters")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the {what} has {len(name)} characters; use at most {MAX_NAME_LENGTH}")
    bad = sorted({c for c in name if c in FORBIDDEN_CHARACTERS})
    if bad:
        raise ValueError(
            f"the {what} {name!r} contains {' '.join(bad)}; use letters, digits, spaces and "
            "simple punctuation (. , - _ + ( ) ! ' &) only"
        )
    if any(unicodedata.category(c).startswith("C") and c not in JOINERS for c in name):
        raise ValueError(f"the {what} contains control characters; type it again")
    if name.startswith("."):
        raise ValueError(f"the {what} {name!r} starts with a dot; start with a letter or digit")
    return name


@dataclass(frozen=True)
class Example:
    """One stored example image of a class."""

    id: str
    label: str
    path: Path
    media_type: str


@dataclass(frozen=True)
class Taught:
    """What the last "teach" used (its classes, in output order, image count and time) and
    found: the leave-one-out ``quality`` report and the ``open_set`` calibration's summary
    (``None`` in a store written before they were kept)."""

    classes: list[str]
    examples: int
    seconds: float
    quality: dict[str, Any] | None = None
    open_set: dict[str, float] | None = None


@dataclass(frozen=True)
class Recogniser:
    """A recogniser with its classes (in creation order) and examples per class.

    ``version`` counts the changes to its classes and examples; ``own_threshold`` is the
    user's "none of these" threshold (``None``: the calibrated one).
    """

    id: str
    name: str
    created: float
    classes: dict[str, list[Example]]
    taught: Taught | None
    version: int
    own_threshold: float | None = None

    @property
    def threshold(self) -> float | None:
        """The threshold in effect: the user's, else the calibrated one; None untaught."""
        if self.taught is None:
            return None
        if self.own_threshold is not None:
            return self.own_threshold
        return None if self.taught.open_set is None else self.taught.open_set["threshold"]

    def summary(self) -> dict[str, object]:
        """The JSON the API returns for this recogniser."""
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "classes": [
                {"label": label, "examples": [e.id for e in examples]}
                for label, examples in self.classes.items()
            ],
            "taught": None if self.taught is None else vars(self.taught),
            "threshold": self.threshold,
            "quality": None if self.taught is None else self.taught.quality,
        }
