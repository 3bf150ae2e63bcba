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


# The store's own record of captures to refund: a list of objects under `lateCaptures`.
LATE_CAPTURES_KEY = "lateCaptures"
# Where another value found under that key is kept when the store writes its list there.
LEGACY_LATE_CAPTURES_KEY = "legacyLateCaptures"


def late_captures(metadata: dict[str, Any]) -> list[Any]:
    """The order's late captures (a new list), from `metadata` as `metadata_object` gave it.

    The store only ever writes a list of objects there, but a hand-edited order may hold
    anything under the key: another value is moved to `legacyLateCaptures` in `metadata`
    (kept, should the caller write its list back) and the list starts empty; entries that
    are not objects stay where they are and match no payment id (`capture_payment_id`)."""
    value = metadata.get(LATE_CAPTURES_KEY)
    if isinstance(value, list):
        return list(value)
    if value is not None:
        metadata[LEGACY_LATE_CAPTURES_KEY] = value
    return []


def capture_payment_id(entry: object) -> object:
    """A late capture's payment id; None for an entry that is not the store's object."""
    return entry.get("paymentId") if isinstance(entry, dict) else None


def capture_settled(entry: object) -> bool:
    """Whether the store recorded the capture's refund (an entry not its own: never due)."""
    return not isinstance(entry, dict) or "refundedAt" in entry
