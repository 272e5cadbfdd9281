"""The built-in "same emoji, different artist" few-shot set, as training reads it.

One class per emoji drawn in every chosen openly licensed style, one image per style,
in the spirit of Omniglot (many concepts, few instances each). Class splits are made
by emoji category, so no category is in two splits. The set is class folders
``<class>/<style>/<codepoints>.<ext>`` with a ``splits.json``, read by
``ClassFolderDataset``: the 64 px set shipped in ``litemeta/datasets/emoji``, or a build
at another size written by :mod:`litemeta.data.emoji_build`
(``litemeta data build-emoji``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from litemeta.data.class_folders import ClassFolderDataset
from litemeta.data.episodic import EpisodicTaskDataset
from litemeta.data.samplers import EpisodeSampler, VariableWaySampler

STYLES = (
    "google",
    "twitter",
    "openmoji",
    "fluent-color",
    "fluent-flat",
    "fluent-high-contrast",
    "fluent-3d",
)
"""The artists' styles of the set, one image per style in every class (the style folders);
``litemeta.data.emoji_build.STYLE_SOURCES`` says where each comes from."""
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "datasets" / "emoji"
BUILTIN_ARCHIVE = BUILTIN_DIR / "emoji-64.zip"


def load_emoji(
    split: str | None = "train",
    root: str | Path | None = None,
    on_error: str = "raise",
    decode_size: int | None = None,
) -> ClassFolderDataset:
    """The built-in emoji set (or a build of it at ``root``) as a styled class-folder
    collection; pick support/query styles when making tasks. Images come at their stored
    size (64 px for the built-in set), or at ``decode_size`` when given."""
    source = Path(root) if root is not None else BUILTIN_ARCHIVE
    if not source.exists():
        raise FileNotFoundError(
            f"emoji set not found at {source}; build one with "
            "`litemeta data build-emoji --size 224 --out DIR`"
        )
    return ClassFolderDataset(
        source, split=split, on_error=on_error, name="emoji", decode_size=decode_size
    )


def emoji_tasks(
    split: str = "train",
    *,
    num_tasks: int = 1000,
    sampler: EpisodeSampler | None = None,
    seed: int = 0,
    support_styles: Sequence[str] | None = None,
    query_styles: Sequence[str] | None = None,
    root: str | Path | None = None,
    decode_size: int | None = None,
) -> EpisodicTaskDataset:
    """Tasks from the emoji set: Meta-Dataset-style variable-way episodes by default.

    With ``support_styles``/``query_styles`` the task learns from some artists' drawings
    and is tested on others' (e.g. support ``['google', 'twitter', 'openmoji']``, query
    ``['fluent-3d']``). Images come at their stored size (64 px for the built-in set; the
    backbone resizes them to its input size on its device), or at ``decode_size``.
    """
    return EpisodicTaskDataset(
        load_emoji(split, root, decode_size=decode_size),
        sampler if sampler is not None else VariableWaySampler(),
        num_tasks=num_tasks,
        seed=seed,
        support_styles=support_styles,
        query_styles=query_styles,
    )
