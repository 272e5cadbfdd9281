"""A recogniser's example images: upload to a class, fetch (or its thumbnail), delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from litemeta.serve.guards import Refused
from litemeta.serve.recogniser import UnreadableExample, make_thumbnail
from litemeta.serve.records import NotFound, check_name
from litemeta.serve.routes.requests import checked_images, form
from litemeta.serve.routes.state import ServingState

__all__ = ["router"]

router = APIRouter(prefix="/api/recognisers/{recogniser_id}/examples")


@router.post("")
async def add_examples(
    recogniser_id: str, request: Request, serving: ServingState
) -> dict[str, int]:
    """Store the uploads in field ``file`` as examples of class ``label`` (made if missing,
    unless ``create`` is ``false``)."""
    serving.store.get(recogniser_id)
    fields, uploads = await form(request, one=False)
    label = check_name(fields.get("label", ""), "class label")
    create = fields.get("create", "true").lower()
    if create not in ("true", "false"):
        raise Refused(400, f"form field 'create' is 'true' or 'false', not {create!r}")
    images = await checked_images(uploads, serving.personaliser.image_size)
    return await run_in_threadpool(
        serving.store.add_examples, recogniser_id, label, images, create == "true"
    )


@router.get("/{example_id}/image")
def example_image(
    recogniser_id: str, example_id: str, serving: ServingState, thumbnail: bool = False
) -> Response:
    """The stored image, or with ``?thumbnail=true`` a small JPEG of it."""
    example = serving.store.example(recogniser_id, example_id)
    if not example.path.is_file():
        raise NotFound(
            f"the image file of example {example_id} of class {example.label!r} is missing "
            "from the store; delete the example"
        )
    if thumbnail:
        try:
            small = make_thumbnail(example.path)
        except (OSError, ValueError) as error:
            raise UnreadableExample(
                f"example {example_id} of class {example.label!r} cannot be read ({error}); "
                "delete it"
            ) from None
        return Response(small, media_type="image/jpeg")
    return FileResponse(example.path, media_type=example.media_type)


@router.delete("/{example_id}")
def delete_example(recogniser_id: str, example_id: str, serving: ServingState) -> dict[str, int]:
    serving.store.delete_example(recogniser_id, example_id)
    return serving.store.counts(recogniser_id)
