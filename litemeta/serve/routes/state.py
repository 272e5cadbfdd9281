"""What the routes share: the personaliser, the store, the app's settings, and each
recogniser's taught classifier, kept with the version of the recogniser it was taught."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from litemeta.serve.guards import Refused
from litemeta.serve.recogniser import Adapted, Personaliser
from litemeta.serve.records import Recogniser, Taught
from litemeta.serve.store import Store

__all__ = ["Serving", "ServingState", "current_serving"]


@dataclass
class Serving:
    """The personaliser and store of one app, with its upload limit and checkpoint name.

    Taught classifiers are kept by recogniser with the version they were taught at, and are
    made (teach, or adapting again after a restart) under one lock, so that two requests
    never adapt at once and a classifier is never kept for examples that changed since.
    """

    personaliser: Personaliser
    store: Store
    max_upload_mb: float
    checkpoint_name: str | None
    _adapted: dict[str, tuple[int, Adapted]] = field(default_factory=dict, init=False)
    _adapting: threading.Lock = field(default_factory=threading.Lock, init=False)

    @staticmethod
    def taught(recogniser: Recogniser) -> Taught:
        """What the recogniser was taught; 409 if it changed since."""
        if recogniser.taught is None:
            raise Refused(
                409,
                f"teach {recogniser.name!r} first: it has not been taught since its classes or "
                "examples last changed",
            )
        return recogniser.taught

    def teach(self, recogniser_id: str) -> Taught:
        """Adapt to the recogniser's examples and record what was taught; 409 if they
        changed while it was being taught."""
        with self._adapting:
            recogniser = self.store.get(recogniser_id)
            result, taught = self.personaliser.teach(recogniser)
            if not self.store.set_taught(recogniser_id, taught, recogniser.version):
                raise Refused(
                    409,
                    f"the classes or examples of {recogniser.name!r} changed while it was "
                    "being taught; teach it again",
                )
            self._adapted[recogniser_id] = (recogniser.version, result)
        return taught

    def adapted(self, recogniser_id: str) -> Adapted:
        """The taught classifier; adapted again from the stored examples after a restart,
        which must give the classes and example count that were taught."""
        with self._adapting:
            recogniser = self.store.get(recogniser_id)
            taught = self.taught(recogniser)
            cached = self._adapted.get(recogniser_id)
            if cached is None or cached[0] != recogniser.version:
                result, again = self.personaliser.teach(recogniser)
                if (again.classes, again.examples) != (taught.classes, taught.examples):
                    self.store.set_taught(recogniser_id, None, recogniser.version)
                    raise Refused(
                        409,
                        f"{recogniser.name!r} was taught {taught.examples} examples of "
                        f"{', '.join(taught.classes)} but now has {again.examples} of "
                        f"{', '.join(again.classes)}; teach it again",
                    )
                self._adapted[recogniser_id] = (recogniser.version, result)
            return self._adapted[recogniser_id][1]

    def forget(self, recogniser_id: str) -> None:
        """Drop a deleted recogniser's classifier."""
        self._adapted.pop(recogniser_id, None)


async def current_serving(request: Request) -> Serving:
    """The :class:`Serving` of the app that received ``request``."""
    serving: Serving = request.app.state.serving
    return serving


#: A route's parameter of this type receives the app's :class:`Serving`.
ServingState = Annotated[Serving, Depends(current_serving)]
