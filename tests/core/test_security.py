"""core/security.py: password threads of their own, bcrypt hashes that are not replaced,
and tokens whose claims cannot be turned into dates."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import bcrypt
import jwt
import pytest

from coursehub.core import security
from tests.conftest import TEST_SECRET

# More than the event loop's default pool ever has threads (min(32, CPUs + 4)).
MORE_THAN_THE_DEFAULT_POOL = 40


@asynccontextmanager
async def default_thread_pool_busy() -> AsyncIterator[None]:
    """Every thread of the event loop's default pool busy until the block ends (as a burst
    of argon2id hashes once made it), the calls beyond queued."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    busy = [loop.run_in_executor(None, release.wait) for _ in range(MORE_THAN_THE_DEFAULT_POOL)]
    try:
        yield
    finally:
        release.set()
        await asyncio.gather(*busy)


async def test_passwords_are_hashed_and_checked_while_the_default_thread_pool_is_busy() -> None:
    """Hashing has threads of its own: it neither waits for the default pool nor fills it
    (which held up the sign-in throttle's in-memory counts, auth/throttle.py)."""
    async with default_thread_pool_busy():
        async with asyncio.timeout(30):  # a guard: sharing the pool, this waited forever
            hashed = await security.hash_password_off_loop("a-password-1")
            checked = await security.verify_password_off_loop("a-password-1", hashed)
            signed_in = await security.verify_sign_in_password("a-password-1", hashed)

    assert checked == (True, None)
    assert signed_in == (True, None)


def node_hash(password: str) -> str:
    """A bcrypt hash as the Node app made it: of the password's first 72 bytes."""
    return bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()


def test_a_bcrypt_hash_is_replaced_only_from_a_password_bcrypt_read_whole() -> None:
    """bcrypt reads a password and its terminating NUL, cut to 72 bytes: under 72 bytes a
    match is of the whole password (its 71-byte prefix does not match); from 72 bytes on,
    the password given may differ from the account's after its 72nd byte, so no argon2id
    hash is made of it."""
    short = "a" * 71
    matches, new_hash = security.verify_password(short, node_hash(short))
    assert matches and new_hash is not None and new_hash.startswith("$argon2id$")
    assert security.verify_password(short[:-1], node_hash(short)) == (False, None)

    long = "ñ" * 50  # 100 bytes in UTF-8
    legacy = node_hash(long)
    assert security.verify_password(long, legacy) == (True, None)
    assert security.verify_password(long + "EXTRA", legacy) == (True, None)
    assert security.verify_password("ñ" * 36, legacy) == (True, None)  # exactly 72 bytes
    assert security.verify_password("ñ" * 35, legacy) == (False, None)


def test_a_signed_token_with_an_absurd_expiry_decodes_without_error() -> None:
    """PyJWT checks `exp` as a number; a datetime made of it (no longer) overflowed at
    1e20, a 500 on every route that reads a token."""
    now = int(time.time())
    for exp in (1e20, 1e300, 2**70):
        token = jwt.encode(
            {"sub": "someone", "typ": "access", "pwv": "f" * 16, "iat": now, "exp": exp},
            TEST_SECRET,
            algorithm=security.JWT_ALGORITHM,
        )
        claims = security.decode_token(token, secret=TEST_SECRET, expected="access")
        assert claims is not None and claims.user_id == "someone", exp


def test_tokens_that_are_not_ours_or_not_valid_decode_to_none() -> None:
    now = int(time.time())
    claims = {"sub": uuid.uuid4().hex, "typ": "access", "pwv": "f" * 16, "iat": now}
    for exp in (now - 1, float("inf")):
        token = jwt.encode({**claims, "exp": exp}, TEST_SECRET, algorithm=security.JWT_ALGORITHM)
        assert security.decode_token(token, secret=TEST_SECRET, expected="access") is None, exp
    refresh = jwt.encode(
        {**claims, "typ": "refresh", "exp": now + 60}, TEST_SECRET, algorithm="HS256"
    )
    assert security.decode_token(refresh, secret=TEST_SECRET, expected="access") is None


# --- Unicode forms of one password ------------------------------------------------------

CAFE_COMPOSED = "caf\u00e9-cr\u00e8me-1"  # é and è as one code point each (NFC)
CAFE_DECOMPOSED = "cafe\u0301-cre\u0300me-1"  # e + combining accent (NFD, as macOS may send)
# A Hindi word with a nukta letter: precomposed क़ (U+0958), or क + nukta (U+0915 U+093C).
QALAM_PRECOMPOSED = "\u0958\u0932\u092e-2026!"
QALAM_WITH_NUKTA = "\u0915\u093c\u0932\u092e-2026!"
FULL_WIDTH = "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44-1"  # ｐａｓｓｗｏｒｄ-1 from an IME


def test_one_password_typed_in_another_unicode_form_matches() -> None:
    """NFKC on hashing and on checking (NIST SP 800-63B): a password set on one keyboard
    was refused when typed on another that sends other code points for the same text."""
    for stored, typed in [
        (CAFE_COMPOSED, CAFE_DECOMPOSED),
        (CAFE_DECOMPOSED, CAFE_COMPOSED),
        (QALAM_PRECOMPOSED, QALAM_WITH_NUKTA),
        (QALAM_WITH_NUKTA, QALAM_PRECOMPOSED),
        (FULL_WIDTH, "password-1"),
    ]:
        hashed = security.hash_password(stored)
        assert security.verify_password(typed, hashed) == (True, None), (stored, typed)
        assert security.verify_password(typed + "x", hashed) == (False, None)


def test_a_hash_made_of_the_text_as_typed_still_matches_and_is_made_again() -> None:
    """Argon2id hashes made before normalising (of the text as it came) and Node's bcrypt
    hashes: the same text still matches, and the new hash matches every form."""
    # Not normalised: U+0958 is one of the letters NFC and NFKC always decompose.
    before = security.password_hash.hash(QALAM_PRECOMPOSED)
    node = bcrypt.hashpw(CAFE_DECOMPOSED.encode(), bcrypt.gensalt(rounds=4)).decode()

    for hashed, typed, other_form in [
        (before, QALAM_PRECOMPOSED, QALAM_WITH_NUKTA),
        (node, CAFE_DECOMPOSED, CAFE_COMPOSED),
    ]:
        matches, new_hash = security.verify_password(typed, hashed)

        assert matches and new_hash is not None and new_hash.startswith("$argon2id$")
        assert security.verify_password(other_form, new_hash) == (True, None)
        assert security.verify_password(typed + "x", hashed) == (False, None)


def test_a_missing_account_costs_as_many_checks_as_an_existing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password not in NFKC is checked in two forms against an account's hash; against
    the dummy hash too, or the time would tell whether the account exists."""
    checked: list[str] = []
    verify = security.password_hash.verify

    def counting(password: str | bytes, hashed: str | bytes) -> bool:
        checked.append(str(password))
        return verify(password, hashed)

    monkeypatch.setattr(security.password_hash, "verify", counting)
    security.verify_password(CAFE_DECOMPOSED, None)
    not_normal = len(checked)
    checked.clear()
    security.verify_password(CAFE_COMPOSED, None)
    normal = len(checked)

    assert (not_normal, normal) == (2, 1)


async def test_a_failed_bcrypt_check_is_drawn_out_to_as_many_checks_as_forms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password not in NFKC costs two argon2id checks for a missing account: a failed
    check against a Node bcrypt hash was drawn out to one, which told the accounts apart."""
    node = bcrypt.hashpw(b"node-era-password", bcrypt.gensalt(rounds=4)).decode()
    monkeypatch.setattr(security.ARGON2ID_CHECK_TIME, "seconds", 10.0)
    pauses: list[float] = []

    async def recorded(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr("coursehub.core.security.asyncio.sleep", recorded)

    await security.verify_sign_in_password("wrong-password", node)
    await security.verify_sign_in_password(CAFE_DECOMPOSED, node)

    one_form, two_forms = pauses
    assert 9.0 < one_form <= 10.0
    assert 19.0 < two_forms <= 20.0
    # The time learnt stays one check's: two-form checks are not averaged in.
    await security.verify_sign_in_password(CAFE_DECOMPOSED, None)
    assert security.ARGON2ID_CHECK_TIME.seconds == 10.0
