"""The web app: one page and a JSON API to create, teach, try and export recognisers.

:func:`create_app` assembles the routes (:mod:`litemeta.serve.routes`) behind the guards
(:mod:`litemeta.serve.guards`); :func:`run_server` serves it."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from litemeta.serve.guards import BodyLimit, Guard, Refused, needs_token
from litemeta.serve.recogniser import Personaliser, UnreadableExample
from litemeta.serve.records import NotFound
from litemeta.serve.routes import classes, examples, pages, predict, recognisers
from litemeta.serve.routes.state import Serving
from litemeta.serve.store import Store

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "create_app", "listen", "run_server"]

DEFAULT_MAX_UPLOAD_MB = 20
#: Seconds Ctrl-C waits for open requests before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 3


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error": "what is wrong and what to do"}`` (docs/serve.md)."""

    @app.exception_handler(Refused)
    async def _refused(request: Request, error: Refused) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, error: NotFound) -> JSONResponse:
        return _error(404, str(error.args[0]))

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, error: ValueError) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(NotImplementedError)
    async def _not_implemented(request: Request, error: NotImplementedError) -> JSONResponse:
        return _error(501, str(error))  # e.g. a learner's classifier without an export form

    @app.exception_handler(UnreadableExample)
    async def _unreadable(request: Request, error: UnreadableExample) -> JSONResponse:
        return _error(409, str(error))

    @app.exception_handler(HTTPException)
    async def _no_route(request: Request, error: HTTPException) -> JSONResponse:
        messages = {
            404: f"no page or API route {request.url.path}; the API is in docs/serve.md",
            405: f"{request.url.path} does not take {request.method} requests",
        }
        message = messages.get(error.status_code, str(error.detail))
        return _error(error.status_code, message, error.headers)


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
    app.state.serving = Serving(personaliser, store, max_upload_mb, checkpoint_name)
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, limit=int(max_upload_mb * 2**20))
    app.add_middleware(Guard, token=token)  # outermost: no token, no 413 either
    for group in (pages, recognisers, classes, examples, predict):
        app.include_router(group.router)
    app.mount("/static", StaticFiles(directory=str(pages.STATIC)), name="static")
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
