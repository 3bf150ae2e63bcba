"""Password hashing and access tokens.

Passwords: argon2id for everything new; bcrypt hashes (`$2a$`, `$2b$`, `$2y$`)
carried over from the Node app still verify, and `verify_password` says when a
hash should be replaced by an argon2id one. Hashing and checking run in threads of
their own (`PASSWORD_THREADS`), never the event loop's default pool.

Tokens: HS256 JWTs. Each carries a fingerprint of the user's password hash
(`pwv`), so changing the password, or deleting/anonymising the account,
invalidates every token issued before without a token table.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
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
    (3 bytes each in UTF-8). A sign-in with such a password never replaces the hash by
    an argon2id one (`verify_password` says why)."""

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


def normalised_password(password: str) -> str:
    """The password in Unicode's NFKC form, as it is hashed and checked (NIST SP 800-63B
    §5.1.1.2). One password can reach us as different code points depending on the
    keyboard or system it was typed on: a Devanagari nukta letter precomposed (क़, U+0958)
    or as the letter and the nukta (क + ़), é as one code point or e and an accent, Latin
    letters in an input method's full width. NFKC makes them one."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    return password_hash.hash(normalised_password(password))


def bcrypt_read_it_whole(password: str) -> bool:
    """Whether a bcrypt check of `password` compared every byte of it. bcrypt hashes the
    password's bytes and a terminating NUL, cut to 72 bytes: a password of 72 bytes or more
    is cut (Node's bcrypt did so silently, `NodeBcryptHasher` does it likewise), so it
    matches the hash of any password that starts with the same 72 bytes."""
    return len(ensure_bytes(password)) < BCRYPT_MAX_PASSWORD_BYTES


def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """(matches, new hash to store or None). A new hash is returned when the stored
    one is not argon2id, e.g. bcrypt from the Node app, unless bcrypt did not read the
    whole password given (`bcrypt_read_it_whole`): that password matched for its first 72
    bytes only, and may be the account's password with a typo after them, or more typed
    after it; an argon2id hash of it would refuse the account's real password from then
    on and accept only the typo. Such an account keeps its bcrypt hash, and the 72-byte
    check, until its password is changed."""
    # As hashed since 2026-11-26 (`normalised_password`), then as typed: Node's bcrypt hashes
    # and this store's earlier argon2id ones were made of the text as it came. A check
    # against the dummy hash makes as many attempts, so that a missing account costs what
    # an existing one does for any password sent.
    forms = _forms(password)
    if hashed is None or not hashed.startswith("$"):
        _check_dummy(forms)
        return False, None
    try:
        if NodeBcryptHasher.identify(hashed):
            return _verify_node_bcrypt(forms, hashed)
        normal = forms[0]
        matches, new_hash = password_hash.verify_and_update(normal, hashed)
        if matches or len(forms) == 1:
            return matches, new_hash
        if password_hash.verify(password, hashed):
            return True, hash_password(password)  # made before normalising: made again
        return False, None
    except Exception:  # an unknown or corrupt hash format: treat as a mismatch
        _check_dummy(forms)
        return False, None


def _forms(password: str) -> tuple[str, ...]:
    """The password as hashed (NFKC), then as typed if that differs."""
    return tuple(dict.fromkeys((normalised_password(password), password)))


def _verify_node_bcrypt(forms: tuple[str, ...], hashed: str) -> tuple[bool, str | None]:
    """A Node bcrypt hash, of the text as typed (tried last in `forms`, first here)."""
    for typed in reversed(forms):
        if password_hash.verify(typed, hashed):
            return True, hash_password(typed) if bcrypt_read_it_whole(typed) else None
    return False, None


def _check_dummy(forms: tuple[str, ...]) -> None:
    for form in forms:
        password_hash.verify(form, _DUMMY_HASH)


def _usable_cpus() -> int:
    """The CPUs this process may run on: its affinity where the system has one (a
    container's cpuset), else every CPU of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Password hashing and checking run here, not in the event loop's default thread pool:
# that pool is shared (asyncio's own getaddrinfo, the `limits` library's in-memory expiry
# pass, which holds a key's lock while it waits for a thread of it), and a burst of
# sign-ups or sign-ins, ~100 ms of argon2id each, would fill it and hold everyone else up
# (the sign-in throttle's counts among them). One thread per CPU: argon2id and bcrypt are
# CPU work (the GIL released), so more threads would not hash any sooner, and each argon2id
# hash takes 64 MiB while it runs, so this also bounds the memory hashing takes. Checks
# beyond that queue here. The threads start on first use (none before a fork).
PASSWORD_THREADS = ThreadPoolExecutor(
    max_workers=_usable_cpus(), thread_name_prefix="coursehub-password"
)


async def hash_password_off_loop(password: str) -> str:
    """`hash_password` in a password thread (`PASSWORD_THREADS`): argon2id takes tens of
    milliseconds of CPU on purpose, and releases the GIL while it works, so the server
    keeps answering other requests meanwhile instead of stalling its event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(PASSWORD_THREADS, hash_password, password)


async def verify_password_off_loop(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """`verify_password` in a password thread (see `hash_password_off_loop`)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(PASSWORD_THREADS, verify_password, password, hashed)


class _Argon2idCheckTime:
    """How long a sign-in's argon2id check has taken lately, in seconds, waiting for a
    password thread included: a moving average over the checks, starting from what making
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
    the event loop (no thread, no CPU). A password not in NFKC is checked in both its forms
    (`verify_password`), against an account's hash or the dummy one alike: the time a check
    takes is learnt from passwords checked in one form, and a failure drawn out to as many
    checks as the password has forms."""
    forms = len(_forms(password))
    began = time.perf_counter()
    matches, new_hash = await verify_password_off_loop(password, hashed)
    took = time.perf_counter() - began
    if hashed is None or not NodeBcryptHasher.identify(hashed):
        if forms == 1:
            ARGON2ID_CHECK_TIME.observe(took)  # the account's argon2id hash, or the dummy
    elif not matches:
        await asyncio.sleep(max(0.0, forms * ARGON2ID_CHECK_TIME.seconds - took))
    return matches, new_hash


def password_fingerprint(secret: str, hashed: str) -> str:
    return hmac.new(secret.encode(), hashed.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    type: TokenType
    fingerprint: str


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
    expected type; otherwise None. Its expiry is PyJWT's to check, as a number: no
    datetime is made of it, which a signed but absurd `exp` (1e20) would overflow."""
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
    )
