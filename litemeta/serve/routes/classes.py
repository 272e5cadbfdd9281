"""A recogniser's classes: add, rename, delete; each answers the example count per class."""

from __future__ import annotations

from fastapi import APIRouter, Request

from litemeta.serve.routes.requests import json_field
from litemeta.serve.routes.state import ServingState

__all__ = ["router"]

router = APIRouter(prefix="/api/recognisers/{recogniser_id}/classes")


@router.post("")
async def add_class(recogniser_id: str, request: Request, serving: ServingState) -> dict[str, int]:
    serving.store.add_class(recogniser_id, await json_field(request, "label"))
    return serving.store.counts(recogniser_id)


@router.patch("/{label}")
async def rename_class(
    recogniser_id: str, label: str, request: Request, serving: ServingState
) -> dict[str, int]:
    serving.store.rename_class(recogniser_id, label, await json_field(request, "label"))
    return serving.store.counts(recogniser_id)


@router.delete("/{label}")
def delete_class(recogniser_id: str, label: str, serving: ServingState) -> dict[str, int]:
    serving.store.delete_class(recogniser_id, label)
    return serving.store.counts(recogniser_id)
