"""The web app: one page and a JSON API to create, teach, try and export recognisers."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import math
import os
import secrets
import socket
import threading
import unicodedata
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders, QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from litemeta.data.images import ImageLoadError
from litemeta.serve.recogniser import (
    STORED_SIZE_FACTOR,
    Adapted,
    Personaliser,
    UnreadableExample,
    check_image,
    make_thumbnail,
)
from litemeta.serve.store import NotFound, Recogniser, Store, Taught, check_name

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "create_app", "listen", "needs_token"]

DEFAULT_MAX_UPLOAD_MB = 20
MAX_FILES_PER_REQUEST = 100
#: Seconds Ctrl-C waits for open requests before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 3
STATIC = resources.files("litemeta.serve") / "static"
UPLOAD_HINT = "send the images as multipart/form-data with field 'file'"
#: Methods that change nothing; the others need a request no other site's page can send.
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: Host names a server without a token answers to (with its port), besides its own address.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class Refused(Exception):
    """A request the app refuses, with its HTTP status and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: Export formats by name, with the file name's suffix.
EXPORT_FORMATS = {"onnx": ".onnx", "onnx-int8": "-int8.onnx"}


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


def ascii_file_name(name: str) -> str:
    """``name`` in ASCII letters, digits, ``-`` and ``_`` for a download: accents dropped
    (``é`` -> ``e``), other characters as ``-``; a name with no ASCII letter or digit
    (``猫と犬 🐶``) is spelt by its UTF-8 bytes in hex instead, never as dashes only."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    spelt = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in plain)
    spelt = "-".join(part for part in spelt.split("-") if part)
    if not any(c.isalnum() for c in spelt):
        return "recogniser-" + name.encode("utf-8").hex()[:32]
    return spelt


def content_disposition(name: str, suffix: str) -> str:
    """An attachment named ``name + suffix``: the ASCII fallback in ``filename`` and the
    name itself, non-ASCII included, in ``filename*`` (RFC 6266, RFC 5987)."""
    fallback = ascii_file_name(name) + suffix
    exact = quote(unicodedata.normalize("NFC", name) + suffix, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def needs_token(host: str) -> bool:
    """True unless ``host`` is the default loopback address 127.0.0.1 (or localhost, ::1)."""
    if host == "localhost":
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return str(address) not in ("127.0.0.1", "::1")


class TextFieldParser(MultiPartParser):
    """Starlette's multipart parser, refusing text fields that are not valid in the form's
    charset (UTF-8 unless it says otherwise) instead of reading them as latin-1."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset)
            except UnicodeDecodeError:
                raise MultiPartException(
                    f"form field {part.field_name!r} is not {self._charset} text"
                ) from None
        super().on_part_end()


class BodyLimit:
    """Refuse (413) request bodies over ``limit`` bytes, by Content-Length or as they stream."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _refusal(self) -> Refused:
        megabytes = self.limit / 2**20
        return Refused(
            413, f"the upload is larger than {megabytes:g} MB; send smaller or fewer images"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            refusal = self._refusal()
            response = JSONResponse({"error": str(refusal)}, status_code=refusal.status)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._refusal()  # answered by the app's handler for Refused
            return message

        await self.app(scope, counted, send)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class Guard:
    """Refuse requests that another site could have made; add security headers.

    With a token, ``/api/`` requests that lack it get 401 (a page elsewhere cannot know it).
    Without one (a loopback server), the ``Host`` header must name the server (so a page on
    another site whose name resolves to 127.0.0.1, "DNS rebinding", is refused), and a
    request that changes something under ``/api/`` must be JSON (``application/json``, which
    a page elsewhere cannot send without the server's consent) or carry this server's own
    ``Origin`` (forms and uploads); any other ``Origin`` is refused. Refusals are 403.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _has_token(self, scope: Scope) -> bool:
        scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
        given = (
            credentials.strip()
            if scheme.lower() == "bearer"
            else QueryParams(scope["query_string"]).get("token", "")
        )
        return secrets.compare_digest(given.encode(), self.token.encode())

    @staticmethod
    def _hosts(scope: Scope) -> list[str]:
        """The ``Host`` values that name this server: loopback names and the address the
        request came in on, with the port (and without it on port 80)."""
        address, port = scope.get("server") or ("127.0.0.1", 80)
        own = f"[{address}]" if ":" in address else address
        names = list(dict.fromkeys([*LOOPBACK_NAMES, own]))
        return [f"{n}:{port}" for n in names] + (names if port == 80 else [])

    @classmethod
    def _cross_site(cls, scope: Scope) -> str | None:
        """Why a token-less request may come from another site's page, or None."""
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        hosts = cls._hosts(scope)
        if host not in hosts:
            return (
                f"this server answers to {', '.join(hosts[:4])} only, not to host {host!r}; "
                f"open http://{hosts[1]}/"
            )
        if scope["method"] in SAFE_METHODS or not scope["path"].startswith("/api/"):
            return None
        own = f"http://{host}"
        origin = headers.get("origin")
        if origin is not None and origin.lower() != own:
            return f"requests from another site ({origin}) are refused; open {own}/"
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type == "application/json":
            return None
        if media_type == "multipart/form-data":
            if origin is None:
                return f"an upload must carry this server's origin: send the header Origin: {own}"
            return None
        no_body = headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
        if not media_type and no_body:  # teach, delete (a form always sends a body type)
            return None
        sent = media_type or "a body without a Content-Type"
        return (
            f"send JSON with Content-Type: application/json, not {sent}, which any web page "
            "can send"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = None
        if self.token is None:
            reason = self._cross_site(scope)
            refusal = None if reason is None else Refused(403, reason)
        elif scope["path"].startswith("/api/") and not self._has_token(scope):
            refusal = Refused(401, "this server needs its token: open the page with ?token=TOKEN")
        if refusal is not None:
            response = JSONResponse({"error": str(refusal)}, status_code=refusal.status)
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    personaliser: Personaliser,
    store: Store,
    *,
    token: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    checkpoint_name: str | None = None,
) -> FastAPI:
    """The ASGI app. With ``token``, every ``/api`` request must send it (header
    ``Authorization: Bearer TOKEN`` or query ``?token=TOKEN``) or gets 401; without one,
    requests another site could have made get 403 (see ``Guard``)."""
    app = FastAPI(title="litemeta", docs_url=None, redoc_url=None, openapi_url=None)
    adapted: dict[str, tuple[int, Adapted]] = {}  # by recogniser: its version, classifier
    adapting = threading.Lock()

    @app.exception_handler(Refused)
    async def _refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"error": str(error.args[0])}, status_code=404)

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.exception_handler(UnreadableExample)
    async def _unreadable(request: Request, error: UnreadableExample) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=409)

    @app.exception_handler(HTTPException)
    async def _no_route(request: Request, error: HTTPException) -> JSONResponse:
        messages = {
            404: f"no page or API route {request.url.path}; the API is in docs/serve.md",
            405: f"{request.url.path} does not take {request.method} requests",
        }
        return JSONResponse(
            {"error": messages.get(error.status_code, str(error.detail))},
            status_code=error.status_code,
            headers=error.headers,
        )

    app.add_middleware(BodyLimit, limit=int(max_upload_mb * 2**20))
    app.add_middleware(Guard, token=token)  # outermost: no token, no 413 either

    async def _json(request: Request, key: str) -> object:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # too deeply nested for the JSON parser
            raise Refused(400, f'send a JSON object like {{"{key}": "..."}}') from None
        if not isinstance(body, dict) or key not in body:
            raise Refused(400, f'send a JSON object like {{"{key}": "..."}}')
        return body[key]

    async def _form(request: Request, one: bool) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        """The form's text fields and its ``file`` uploads as ``(file name, data)``."""
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise Refused(400, UPLOAD_HINT)
        parser = TextFieldParser(request.headers, request.stream(), max_files=MAX_FILES_PER_REQUEST)
        try:
            form = await parser.parse()
        except Refused:
            raise
        except Exception as error:  # the multipart parser raises several types
            raise Refused(400, f"{UPLOAD_HINT} ({error})") from None
        try:
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                raise Refused(400, "no image received: attach one or more files in field 'file'")
            if one and len(files) > 1:
                raise Refused(400, f"send one image at a time, got {len(files)}")
            uploads = [(f.filename or "the upload", await f.read()) for f in files]
        finally:
            await form.close()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        return fields, uploads

    async def _images(uploads: list[tuple[str, bytes]]) -> list[tuple[bytes, str, str]]:
        """Each upload decoded once, checked and downscaled to a bounded size, as ``(data,
        extension, media type)``."""
        longest_side = STORED_SIZE_FACTOR * personaliser.image_size
        images = []
        for name, data in uploads:
            try:
                checked = await run_in_threadpool(check_image, data, name, longest_side)
            except ImageLoadError as error:
                raise Refused(400, str(error)) from None
            images.append((checked.data, checked.extension, checked.media_type))
        return images

    def _taught(recogniser: Recogniser) -> Taught:
        """What the recogniser was taught; 409 if it changed since."""
        if recogniser.taught is None:
            raise Refused(
                409,
                f"teach {recogniser.name!r} first: it has not been taught since its classes or "
                "examples last changed",
            )
        return recogniser.taught

    def _adapted(recogniser_id: str) -> Adapted:
        """The taught classifier; adapted again from the stored examples after a restart,
        which must give the classes and example count that were taught."""
        with adapting:
            recogniser = store.get(recogniser_id)
            taught = _taught(recogniser)
            cached = adapted.get(recogniser_id)
            if cached is None or cached[0] != recogniser.version:
                result, again = personaliser.teach(recogniser)
                if (again.classes, again.examples) != (taught.classes, taught.examples):
                    store.set_taught(recogniser_id, None, recogniser.version)
                    raise Refused(
                        409,
                        f"{recogniser.name!r} was taught {taught.examples} examples of "
                        f"{', '.join(taught.classes)} but now has {again.examples} of "
                        f"{', '.join(again.classes)}; teach it again",
                    )
                adapted[recogniser_id] = (recogniser.version, result)
            return adapted[recogniser_id][1]

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(str(STATIC / "favicon.svg"), media_type="image/svg+xml")

    @app.get("/api/health")
    def health() -> dict[str, object]:
        return {
            "status": "ok",
            "checkpoint": checkpoint_name,
            "learner": personaliser.learner.name,
            "image_size": personaliser.image_size,
            "max_upload_mb": max_upload_mb,
            "model": personaliser.description.model,
            "meta_trained": personaliser.description.meta_trained,
            "hint": personaliser.description.hint,
        }

    @app.get("/api/recognisers")
    def list_recognisers() -> list[dict[str, object]]:
        return [r.summary() for r in store.recognisers()]

    @app.post("/api/recognisers", status_code=201)
    async def create(request: Request) -> dict[str, str]:
        return {"id": store.create(await _json(request, "name"))}

    @app.get("/api/recognisers/{recogniser_id}")
    def get(recogniser_id: str) -> dict[str, object]:
        return store.get(recogniser_id).summary()

    @app.delete("/api/recognisers/{recogniser_id}")
    def delete(recogniser_id: str) -> dict[str, bool]:
        store.delete(recogniser_id)
        adapted.pop(recogniser_id, None)
        return {"deleted": True}

    @app.post("/api/recognisers/{recogniser_id}/classes")
    async def add_class(recogniser_id: str, request: Request) -> dict[str, int]:
        store.add_class(recogniser_id, await _json(request, "label"))
        return store.counts(recogniser_id)

    @app.patch("/api/recognisers/{recogniser_id}/classes/{label}")
    async def rename_class(recogniser_id: str, label: str, request: Request) -> dict[str, int]:
        store.rename_class(recogniser_id, label, await _json(request, "label"))
        return store.counts(recogniser_id)

    @app.delete("/api/recognisers/{recogniser_id}/classes/{label}")
    def delete_class(recogniser_id: str, label: str) -> dict[str, int]:
        store.delete_class(recogniser_id, label)
        return store.counts(recogniser_id)

    @app.post("/api/recognisers/{recogniser_id}/examples")
    async def add_examples(recogniser_id: str, request: Request) -> dict[str, int]:
        store.get(recogniser_id)
        fields, uploads = await _form(request, one=False)
        label = check_name(fields.get("label", ""), "class label")
        create = fields.get("create", "true").lower()
        if create not in ("true", "false"):
            raise Refused(400, f"form field 'create' is 'true' or 'false', not {create!r}")
        images = await _images(uploads)
        return await run_in_threadpool(
            store.add_examples, recogniser_id, label, images, create == "true"
        )

    @app.get("/api/recognisers/{recogniser_id}/examples/{example_id}/image")
    def example_image(recogniser_id: str, example_id: str, thumbnail: bool = False) -> Response:
        """The stored image, or with ``?thumbnail=true`` a small JPEG of it."""
        example = store.example(recogniser_id, example_id)
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

    @app.delete("/api/recognisers/{recogniser_id}/examples/{example_id}")
    def delete_example(recogniser_id: str, example_id: str) -> dict[str, int]:
        store.delete_example(recogniser_id, example_id)
        return store.counts(recogniser_id)

    @app.post("/api/recognisers/{recogniser_id}/teach")
    def teach(recogniser_id: str) -> dict[str, object]:
        with adapting:
            recogniser = store.get(recogniser_id)
            result, taught = personaliser.teach(recogniser)
            if not store.set_taught(recogniser_id, taught, recogniser.version):
                raise Refused(
                    409,
                    f"the classes or examples of {recogniser.name!r} changed while it was "
                    "being taught; teach it again",
                )
            adapted[recogniser_id] = (recogniser.version, result)
        return vars(taught)

    @app.post("/api/recognisers/{recogniser_id}/predict")
    async def predict(recogniser_id: str, request: Request) -> dict[str, object]:
        _taught(store.get(recogniser_id))  # before reading the upload
        _, uploads = await _form(request, one=True)
        [(data, _, _)] = await _images(uploads)

        def answer() -> dict[str, object]:
            taught = _adapted(recogniser_id)
            threshold = store.get(recogniser_id).own_threshold
            return personaliser.predict(taught, data, "the image", threshold)

        return await run_in_threadpool(answer)

    @app.put("/api/recognisers/{recogniser_id}/threshold")
    async def set_threshold(recogniser_id: str, request: Request) -> dict[str, float | None]:
        store.get(recogniser_id)
        threshold = _threshold(await _json(request, "threshold"))
        store.set_threshold(recogniser_id, threshold)
        return {"threshold": store.get(recogniser_id).threshold}

    @app.get("/api/recognisers/{recogniser_id}/export")
    def export(recogniser_id: str, format: str = "onnx") -> Response:
        if format not in EXPORT_FORMATS:
            raise Refused(
                400,
                f"unknown export format {format!r}; use format=onnx (float) or format=onnx-int8 "
                "(quantised, about 4 times smaller)",
            )
        recogniser = store.get(recogniser_id)
        taught = _adapted(recogniser_id)
        model = personaliser.export(
            taught, store.get(recogniser_id).own_threshold, int8=format == "onnx-int8"
        )
        return Response(
            model,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": content_disposition(recogniser.name, EXPORT_FORMATS[format]),
                "X-Labels": json.dumps(taught.classes),  # also in the model's metadata
            },
        )

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), for the server to listen on;
    ``OSError`` with what to change if it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":  # as uvicorn does: a restart need not wait out closed connections
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        reasons = {
            errno.EADDRINUSE: f"port {port} on {host} is in use (another server?); stop it or "
            "pick another port with --port",
            errno.EACCES: f"no permission to use port {port} on {host} (ports below 1024 need "
            "administrator rights); pick a port from 1024 to 65535 with --port",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine; pick one with "
            "--host (e.g. 127.0.0.1)",
        }
        reason = reasons.get(
            error.errno, f"cannot listen on {host} port {port} ({error}); check --host and --port"
        )
        raise OSError(reason) from None
    return listener


def run_server(
    checkpoint: str | Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store: str | Path,
    token: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    chunk_size: int | None = None,
) -> None:
    """Bind the port, load the checkpoint (``None``: the pretrained backbone with ProtoNets'
    classifier), open (and lock) the store, and serve until interrupted. Nothing is
    printed and the store is not touched if the port is taken."""
    import uvicorn

    if needs_token(host) and not token:
        raise ValueError(
            f"binding to {host} lets other machines reach the server; pass --token SECRET "
            "(and open the page with ?token=SECRET) or bind to 127.0.0.1"
        )
    listener = listen(host, port)
    try:
        personaliser = (
            Personaliser.pretrained(chunk_size)
            if checkpoint is None
            else Personaliser.from_checkpoint(checkpoint, chunk_size)
        )
        address = f"[{host}]" if ":" in host else host
        url = f"http://{address}:{listener.getsockname()[1]}/"
        opened = Store(store, holder=f"litemeta serve {url}")
        try:
            app = create_app(
                personaliser,
                opened,
                token=token,
                max_upload_mb=max_upload_mb,
                checkpoint_name=None if checkpoint is None else Path(checkpoint).name,
            )
            page = url + (f"?token={token}" if token else "")
            print(f"litemeta: serving {page} (store {store}); Ctrl-C stops", flush=True)
            print(f"litemeta: model: {personaliser.description.model}", flush=True)
            if personaliser.description.hint:
                print(f"litemeta: {personaliser.description.hint}", flush=True)
            config = uvicorn.Config(
                app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS
            )
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops it, as uvicorn.run
                uvicorn.Server(config).run(sockets=[listener])
        finally:
            opened.close()
    finally:
        listener.close()
