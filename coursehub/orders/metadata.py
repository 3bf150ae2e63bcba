"""An order's metadata as an object, whatever a database carried over from the Node app
holds there.

`Order.metadata` is Prisma's `Json?`: the Node app may have stored any JSON value in it —
an array, a string, a number, a boolean, JSON `null` — where the store itself only ever
writes objects. Every place that reads a key from it or merges keys into it goes through
`metadata_object`, so such a value neither fails the request (`.get` on a list, `{**42}`)
nor is lost by the merge: it is kept whole under `legacy`. The expiry's SQL merge does the
same (`orders/repository.py`, `_metadata_object`).
"""

from __future__ import annotations

from typing import Any

# Where a metadata value that is not an object is kept once the store merges into it.
LEGACY_KEY = "legacy"


def metadata_object(value: object) -> dict[str, Any]:
    """The metadata as a new object to read from or merge into (a copy: the caller may
    change it and assign it back, which SQLAlchemy sees only as a new value). An object as
    it is; nothing (SQL NULL, JSON `null`) as `{}`; any other JSON value as
    `{"legacy": value}`."""
    if isinstance(value, dict):
        return dict(value)
    if value is None:
        return {}
    return {LEGACY_KEY: value}
