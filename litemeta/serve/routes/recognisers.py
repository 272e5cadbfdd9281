"""The server's health, and recognisers: list, create, get, delete, teach, and set the
threshold of "none of these"."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request

from litemeta.serve.guards import Refused
from litemeta.serve.routes.requests import json_field
from litemeta.serve.routes.state import ServingState

__all__ = ["router"]

router = APIRouter(prefix="/api")


def _threshold(value: object) -> float | None:
    """A user's "none of these" threshold: a familiarity from 0 to 1, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(400, f"the threshold must be a number from 0 to 1 or null, got {value!r}")
    if not 0 <= value <= 1:
        raise Refused(
            400,
            f"the threshold is a familiarity from 0 to 1, got {value}; 0 never answers "
            '"none of these", null goes back to the calibrated one',
        )
    return float(value)


@router.get("/health")
def health(serving: ServingState) -> dict[str, object]:
    personaliser = serving.personaliser
    return {
        "status": "ok",
        "checkpoint": serving.checkpoint_name,
        "learner": personaliser.learner.name,
        "image_size": personaliser.image_size,
        "max_upload_mb": serving.max_upload_mb,
        "model": personaliser.description.model,
        "meta_trained": personaliser.description.meta_trained,
        "hint": personaliser.description.hint,
    }


@router.get("/recognisers")
def list_recognisers(serving: ServingState) -> list[dict[str, object]]:
    return [r.summary() for r in serving.store.recognisers()]


@router.post("/recognisers", status_code=201)
async def create(request: Request, serving: ServingState) -> dict[str, str]:
    return {"id": serving.store.create(await json_field(request, "name"))}


@router.get("/recognisers/{recogniser_id}")
def get(recogniser_id: str, serving: ServingState) -> dict[str, object]:
    return serving.store.get(recogniser_id).summary()


@router.delete("/recognisers/{recogniser_id}")
def delete(recogniser_id: str, serving: ServingState) -> dict[str, bool]:
    serving.store.delete(recogniser_id)
    serving.forget(recogniser_id)
    return {"deleted": True}


@router.post("/recognisers/{recogniser_id}/teach")
def teach(recogniser_id: str, serving: ServingState) -> dict[str, object]:
    return vars(serving.teach(recogniser_id))


@router.put("/recognisers/{recogniser_id}/threshold")
async def set_threshold(
    recogniser_id: str, request: Request, serving: ServingState
) -> dict[str, float | None]:
    serving.store.get(recogniser_id)
    threshold = _threshold(await json_field(request, "threshold"))
    serving.store.set_threshold(recogniser_id, threshold)
    return {"threshold": serving.store.get(recogniser_id).threshold}
