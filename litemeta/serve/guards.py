"""What the web app refuses before any route runs: requests another site's page could have
made (:class:`Guard`) and bodies over the upload limit (:class:`BodyLimit`); and
:class:`Refused`, the refusal every part of the app raises."""

from __future__ import annotations

import ipaddress
import secrets

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "Guard", "Refused", "needs_token"]

#: Methods that change nothing; the others need a request no other site's page can send.
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: Host names a server without a token answers to (with its port), besides its own address.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class Refused(Exception):
    """A request the app refuses, with its HTTP status and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def needs_token(host: str) -> bool:
    """True unless ``host`` is the default loopback address 127.0.0.1 (or localhost, ::1)."""
    if host == "localhost":
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return str(address) not in ("127.0.0.1", "::1")


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
