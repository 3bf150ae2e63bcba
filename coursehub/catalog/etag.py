"""ETags for GET responses, and 304 for a matching `If-None-Match`.

The tag is a hash of the response body, so it changes exactly when what the
client would see changes (an admin viewing a draft gets another body, hence
another tag). The query still runs; a 304 saves the transfer and the client's
parsing. Used as the catalogue router's `route_class`.

Because the body depends on who asks (an admin sees drafts a visitor gets a 404 for),
every tagged response, a 304 too, says `Vary: Authorization`: a shared cache must not
hand an admin's draft to a visitor, nor revalidate one caller's copy with another's tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# The request headers a catalogue response depends on: the caller (drafts for admins).
VARY_ON = "Authorization"


def with_vary(existing: str | None, header: str = VARY_ON) -> str:
    """`existing` Vary value with `header` added once (case-insensitively), order kept."""
    names = [name.strip() for name in (existing or "").split(",") if name.strip()]
    if "*" in names or header.lower() in (name.lower() for name in names):
        return ", ".join(names)
    return ", ".join([*names, header])


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
            vary = with_vary(response.headers.get("vary"))
            if etag_matches(request.headers.get("if-none-match"), etag):
                # RFC 9110 §15.4.5: a 304 carries the Vary the 200 would have.
                return Response(status_code=304, headers={"ETag": etag, "Vary": vary})
            response.headers["ETag"] = etag
            response.headers["Vary"] = vary
            return response

        return handler_with_etag
