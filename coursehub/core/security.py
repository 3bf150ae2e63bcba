"""Password hashing and access tokens.

Passwords: argon2id for everything new; bcrypt hashes (`$2a$`, `$2b$`, `$2y$`)
carried over from the Node app still verify, and `verify_password` says when a
hash should be replaced by an argon2id one.

Tokens: HS256 JWTs. Each carries a fingerprint of the user's password hash
(`pwv`), so changing the password, or deleting/anonymising the account,
invalidates every token issued before without a token table.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.base import ensure_bytes
from pwdlib.hashers.bcrypt import BcryptHasher

from coursehub.core.models import utcnow

TokenType = Literal["access", "refresh"]
JWT_ALGORITHM = "HS256"

# bcrypt reads at most this many bytes of a password.
BCRYPT_MAX_PASSWORD_BYTES = 72


class NodeBcryptHasher(BcryptHasher):
    """Verifies bcrypt hashes as the Node app made them. Node's bcrypt (and bcryptjs)
    hashed a password's first 72 bytes and ignored the rest, silently; the bcrypt package
    here refuses a longer password (ValueError), which would lock out every carried-over
    account whose password is longer: a passphrase, or ~25 characters of Hindi or Tamil
    (3 bytes each in UTF-8). Its argon2id replacement is made from the whole password."""

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        return super().verify(ensure_bytes(password)[:BCRYPT_MAX_PASSWORD_BYTES], hash)


password_hash = PasswordHash((Argon2Hasher(), NodeBcryptHasher()))

# Verified against when the account does not exist, so a wrong login takes the
# same time whether or not the account exists.
_began = time.perf_counter()
_DUMMY_HASH = password_hash.hash("coursehub-timing-equaliser")
_DUMMY_HASH_SECONDS = time.perf_counter() - _began

# A password hash that no password verifies: used for anonymised accounts.
UNUSABLE_PASSWORD = "!unusable"


def hash_password(password: str) -> str:
    return password_hash.hash(password)


def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """(matches, new hash to store or None). A new hash is returned when the stored
    one is not argon2id, e.g. bcrypt from the Node app."""
    if hashed is None or not hashed.startswith("$"):
        password_hash.verify(password, _DUMMY_HASH)
        return False, None
    try:
        return password_hash.verify_and_update(password, hashed)
    except Exception:  # an unknown or corrupt hash format: treat as a mismatch
        password_hash.verify(password, _DUMMY_HASH)
        return False, None


async def hash_password_off_loop(password: str) -> str:
    """`hash_password` in a worker thread: argon2id takes tens of milliseconds of CPU on
    purpose, and releases the GIL while it works, so the server keeps answering other
    requests meanwhile instead of stalling its event loop."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_off_loop(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """`verify_password` in a worker thread (see `hash_password_off_loop`)."""
    return await asyncio.to_thread(verify_password, password, hashed)


class _Argon2idCheckTime:
    """How long a sign-in's argon2id check has taken lately, in seconds, waiting for a
    worker thread included: a moving average over the checks, starting from what making
    the dummy hash took (the same work)."""

    WEIGHT = 0.2  # of each new check

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def observe(self, seconds: float) -> None:
        self.seconds += self.WEIGHT * (seconds - self.seconds)


ARGON2ID_CHECK_TIME = _Argon2idCheckTime(_DUMMY_HASH_SECONDS)


async def verify_sign_in_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """`verify_password_off_loop` for a sign-in, whose failure must take as long whether or
    not the account exists. A missing account is checked against the dummy argon2id hash,
    so it costs what an argon2id account costs; a Node bcrypt hash (cost 10: about half
    of that here) would answer sooner and tell that the account exists. So a failed check
    against a bcrypt hash is drawn out to the recent argon2id checks' time, by a sleep on
    the event loop (no thread, no CPU)."""
    began = time.perf_counter()
    matches, new_hash = await verify_password_off_loop(password, hashed)
    took = time.perf_counter() - began
    if hashed is None or not NodeBcryptHasher.identify(hashed):
        ARGON2ID_CHECK_TIME.observe(took)  # the account's argon2id hash, or the dummy
    elif not matches:
        await asyncio.sleep(max(0.0, ARGON2ID_CHECK_TIME.seconds - took))
    return matches, new_hash


def password_fingerprint(secret: str, hashed: str) -> str:
    return hmac.new(secret.encode(), hashed.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    type: TokenType
    fingerprint: str
    expires_at: datetime


def create_token(
    *, secret: str, user_id: str, password_hashed: str, type: TokenType, lifetime: timedelta
) -> str:
    now = utcnow()
    claims = {
        "sub": user_id,
        "typ": type,
        "pwv": password_fingerprint(secret, password_hashed),
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_token(token: str, *, secret: str, expected: TokenType) -> TokenClaims | None:
    """The token's claims if it is well-formed, signed by us, unexpired and of the
    expected type; otherwise None."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "typ", "pwv", "exp", "iat"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != expected:
        return None
    return TokenClaims(
        user_id=str(claims["sub"]),
        type=expected,
        fingerprint=str(claims["pwv"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"])),
    )
