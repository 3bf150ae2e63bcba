"""Cursors (core/pagination.py): signed, bound to their list, and holding only what the list
signed into them; the (createdAt, id) keyset shared by the users, orders and enrollments
lists."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from coursehub.core.errors import BadCursor
from coursehub.core.pagination import (
    CursorCodec,
    Page,
    decode_time_keyset,
    time_keyset_page,
)

CODEC = CursorCodec("a-secret-of-at-least-thirty-two-characters")
MOMENT = datetime(2026, 11, 25, 10, 30, 0, 123000, tzinfo=UTC)


def test_a_cursor_round_trips_in_its_own_context_only() -> None:
    cursor = CODEC.encode("list-a", [MOMENT.isoformat(), "id-1"])

    assert decode_time_keyset(CODEC, "list-a", cursor) == (MOMENT, "id-1")
    with pytest.raises(BadCursor):
        decode_time_keyset(CODEC, "list-b", cursor)
    with pytest.raises(BadCursor):
        decode_time_keyset(
            CursorCodec("another-secret-of-thirty-two-characters!"), "list-a", cursor
        )


def test_an_edited_or_truncated_cursor_is_refused() -> None:
    cursor = CODEC.encode("list", [MOMENT.isoformat(), "id-1"])
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 1  # one bit of the payload
    edited = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")

    for bad in (edited, cursor[:-4], cursor[:10], "", "!!!not-base64!!!"):
        with pytest.raises(BadCursor):
            decode_time_keyset(CODEC, "list", bad)


@pytest.mark.parametrize(
    "values",
    [
        ["2026-11-25T10:30:00"],  # one value
        ["2026-11-25T10:30:00+00:00", "id", "extra"],
        ["2026-11-25T10:30:00", "id-1"],  # naive: never signed by us
        ["yesterday", "id-1"],
        [1764066600, "id-1"],
        ["2026-11-25T10:30:00+00:00", 7],
    ],
)
def test_a_signed_cursor_of_another_shape_is_refused(values: list[object]) -> None:
    cursor = CODEC.encode("list", values)  # type: ignore[arg-type]

    with pytest.raises(BadCursor):
        decode_time_keyset(CODEC, "list", cursor)


def test_a_page_has_a_cursor_only_when_a_row_was_left_over() -> None:
    rows = [(MOMENT.replace(second=s), f"id-{s}") for s in (5, 4, 3)]

    full = time_keyset_page(rows, limit=2, keyset=lambda r: r, codec=CODEC, context="list")
    last = time_keyset_page(rows, limit=3, keyset=lambda r: r, codec=CODEC, context="list")

    assert full.items == rows[:2]
    assert full.next_cursor is not None
    assert decode_time_keyset(CODEC, "list", full.next_cursor) == rows[1]
    assert last == Page(items=rows, next_cursor=None)
