"""The webhook's signature: HMAC-SHA256 of the raw body under the shared secret, in hex.

It is computed over the bytes exactly as received (never re-serialised JSON), and
compared in constant time so a forger learns nothing from how long a guess took.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-CourseHub-Signature"


def sign(body: bytes, secret: str) -> str:
    """The hex signature the gateway sends for `body`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_valid_signature(body: bytes, signature: str | None, secret: str) -> bool:
    if not signature:
        return False
    # Hex is case-insensitive; compare_digest needs ASCII on both sides.
    candidate = signature.strip().lower()
    if not candidate.isascii():
        return False
    return hmac.compare_digest(candidate, sign(body, secret))
