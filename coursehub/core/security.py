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
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from coursehub.core.models import utcnow

TokenType = Literal["access", "refresh"]
JWT_ALGORITHM = "HS256"

password_hash = PasswordHash((Argon2Hasher(), BcryptHasher()))

# Verified against when the account does not exist, so a wrong login takes the
# same time whether or not the account exists.
_DUMMY_HASH = password_hash.hash("coursehub-timing-equaliser")

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
