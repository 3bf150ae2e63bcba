"""Keyset pagination with opaque, tamper-proof cursors.

A cursor holds the sort key of the last row served (e.g. createdAt and id),
signed with the store's secret and bound to the list it came from (`context`:
the route and sort order, e.g. "courses:price_asc"). A cursor that was edited,
truncated, or made for another list is a 400, never a silent wrong page.
Keyset pages never repeat or skip a row while rows are added, deleted, or edited in
anything but the sort key, and cost the same on page 1,000 as on page 1. A row whose
sort key changes (a course's price under `price_asc`) moves across the cursor: it may
then be served twice or not at all, as under any keyset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from coursehub.core.errors import BadCursor

T = TypeVar("T")
CursorValue = str | int | float | bool | None

DEFAULT_LIMIT = 20
SIGNATURE_BYTES = 12  # 96 bits: forging one takes ~2⁹⁶ tries
MAX_LIMIT = 100


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"coursehub-cursor:" + secret.encode()).digest()

    def _sign(self, context: str, payload: bytes) -> bytes:
        # BLAKE2b in its keyed mode is a MAC (RFC 7693), as HMAC-SHA256 was here before,
        # and is CPython's own C code: ~1.7 µs a cursor in a busy server, where OpenSSL's
        # HMAC cost ~7-14 µs (its state falls out of the CPU caches between requests).
        message = context.encode() + b"\0" + payload
        return hashlib.blake2b(message, key=self._key, digest_size=SIGNATURE_BYTES).digest()

    def encode(self, context: str, values: list[CursorValue]) -> str:
        # pydantic-core's JSON (compact, UTF-8): ~0.2 µs a cursor against ~1.2 for the
        # standard library's encoder, which builds its C encoder afresh at every call.
        payload = to_json(values)
        token = self._sign(context, payload) + payload
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, context: str, cursor: str) -> list[CursorValue]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise BadCursor("the cursor is not valid; start again without one") from None
        signature, payload = raw[:SIGNATURE_BYTES], raw[SIGNATURE_BYTES:]
        if len(signature) < SIGNATURE_BYTES or not hmac.compare_digest(
            signature, self._sign(context, payload)
        ):
            raise BadCursor("the cursor is not valid for this list; start again without one")
        try:
            values = json.loads(payload)
        except ValueError:
            raise BadCursor("the cursor is not valid; start again without one") from None
        if not isinstance(values, list):
            raise BadCursor("the cursor is not valid; start again without one")
        return values


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, as services return it."""

    items: list[T]
    next_cursor: str | None


# The keyset of most lists, newest first: createdAt (aware), then id.
TimeKeyset = tuple[datetime, str]


def decode_time_keyset(codec: CursorCodec, context: str, cursor: str) -> TimeKeyset:
    """The (createdAt, id) a cursor of `context` holds: 400 for anything else."""
    values = codec.decode(context, cursor)
    bad = BadCursor("the cursor is not valid for this list; start again without one")
    if len(values) != 2 or not all(isinstance(value, str) for value in values):
        raise bad
    created, row_id = str(values[0]), str(values[1])
    try:
        created_at = datetime.fromisoformat(created)
    except ValueError:
        raise bad from None
    if created_at.tzinfo is None:  # we only ever sign aware ones
        raise bad
    return created_at, row_id


def time_keyset_page(
    rows: Sequence[T],
    *,
    limit: int,
    keyset: Callable[[T], TimeKeyset],
    codec: CursorCodec,
    context: str,
) -> Page[T]:
    """A page from `limit + 1` rows fetched in order (the extra one says a next page exists,
    without a count); its cursor holds the last served row's (createdAt, id)."""
    items = list(rows[:limit])
    next_cursor = None
    if len(rows) > limit:
        created_at, row_id = keyset(items[-1])
        next_cursor = codec.encode(context, [created_at.isoformat(), row_id])
    return Page(items=items, next_cursor=next_cursor)


class PageQuery(BaseModel):
    """`limit` and `cursor`, the query of a plain list (other parameters are ignored)."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class PageRead(BaseModel, Generic[T]):
    """One page of a list, as the API returns it: pass `next_cursor` back as `cursor`."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Opaque; pass it as `cursor` for the next page. Null on the last page."
    )
