"""The learners known by name: every learner class with a ``name`` registers itself when its
module is imported, and every module of this package is imported with the package, so a new
learner is one new file here (as timm's ``register_model`` / ``list_models``)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litemeta.learners.backbone_learner import BackboneLearner

__all__ = ["LEARNERS", "discover_learners", "register_learner"]

#: Learner classes by the name :func:`litemeta.learners.build_learner` knows them by, in the
#: order they were registered.
LEARNERS: dict[str, type[BackboneLearner]] = {}


def register_learner(cls: type[BackboneLearner]) -> type[BackboneLearner]:
    """Add ``cls`` to :data:`LEARNERS` under ``cls.name``; a name taken by another class is an
    error (re-importing the same class replaces it)."""
    known = LEARNERS.get(cls.name)
    if known is not None and (known.__module__, known.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ValueError(
            f"learner name '{cls.name}' of {cls.__module__}.{cls.__qualname__} is taken by "
            f"{known.__module__}.{known.__qualname__}: give the new learner another name"
        )
    LEARNERS[cls.name] = cls
    return cls


def discover_learners() -> dict[str, type[BackboneLearner]]:
    """Import every module on the ``litemeta.learners`` package path (their learners register
    themselves); return :data:`LEARNERS`."""
    package = importlib.import_module("litemeta.learners")
    importlib.invalidate_caches()
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return LEARNERS
