"""ETags for GET responses, and 304 for a matching `If-None-Match`.

The tag is a hash of the response body, so it changes exactly when what the
client would see changes (an admin viewing a draft gets another body, hence
another tag). The query still runs; a 304 saves the transfer and the client's
parsing. Used as the catalogue router's `route_class`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def body_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an `If-None-Match` header against our tag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag.removeprefix("W/") in candidates


class ETagRoute(APIRoute):
    """Adds an ETag to successful GET responses and answers a matching If-None-Match with 304."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handler_with_etag(request: Request) -> Response:
            response = await handler(request)
            if request.method != "GET" or response.status_code != 200:
                return response
            body = getattr(response, "body", None)
            if not isinstance(body, bytes):
                return response  # a streamed body has no hash to give
            etag = body_etag(body)
            if etag_matches(request.headers.get("if-none-match"), etag):
                return Response(status_code=304, headers={"ETag": etag})
            response.headers["ETag"] = etag
            return response

        return handler_with_etag
