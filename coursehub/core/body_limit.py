"""A limit on the size of request bodies, refused as problem+json before they are read.

Without one, a client can make a worker read a body of any size into memory before
validation looks at it. Starlette's own `RequestBodyLimitMiddleware` (FastAPI's
`max_body_size`) counts the same way but answers a declared oversize body with a plain-text
413 of its own, replacing whatever the app answered; the store's errors are problem+json
with a machine-readable code, so this one answers that itself:

- a `Content-Length` above the limit: 413 at once, the app not called, the body never read;
- a body without one (chunked): counted as it arrives; past the limit the read raises
  `ContentTooLarge`, a Starlette HTTPException, which FastAPI re-raises from wherever the
  body was read (the route's body, the webhook's signature check) and core/problems.py
  renders. Nothing has been written by then: bodies are read before the unit of work.

A body within its declared length costs nothing here: `receive` is passed on as it is.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coursehub.core.problems import problem_response

CONTENT_TOO_LARGE = 413


class ContentTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(CONTENT_TOO_LARGE, f"the request body is larger than {limit} bytes")


class RequestBodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await self.app(scope, self._counting(receive), send)
        elif declared > self.max_bytes:
            error = ContentTooLarge(self.max_bytes)
            response = problem_response(
                CONTENT_TOO_LARGE, "content_too_large", error.detail, error.detail
            )
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ContentTooLarge(self.max_bytes)
            return message

        return receive_counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The server has parsed the request's framing by it already (h11 and httptools
            # refuse a malformed one), so it is digits.
            return int(value) if value.isdigit() else None
    return None
