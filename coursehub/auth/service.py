"""Signing in: credentials to tokens, refresh tokens to new ones, password changes.

Tokens are stateless JWTs (core/security.py) carrying a fingerprint of the user's
password hash: a password change, or the account's deletion or anonymisation,
invalidates every token issued before, access and refresh alike, without a token
table. The role is never read from a token (auth/dependencies.py reads the user).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.auth.errors import InvalidCredentials, InvalidRefreshToken
from coursehub.auth.throttle import SignInThrottle, account_key
from coursehub.core.database import session_apart
from coursehub.core.errors import Unauthorized
from coursehub.core.security import (
    create_token,
    decode_token,
    hash_password_off_loop,
    password_fingerprint,
    verify_password_off_loop,
    verify_sign_in_password,
)
from coursehub.core.settings import Settings
from coursehub.users import repository
from coursehub.users import service as users
from coursehub.users.models import User


@dataclass(frozen=True)
class TokenPolicy:
    """The secret and lifetimes tokens are made with (from settings)."""

    secret: str
    access_lifetime: timedelta
    refresh_lifetime: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenPolicy:
        return cls(
            secret=settings.secret_key.get_secret_value(),
            access_lifetime=timedelta(minutes=settings.access_token_minutes),
            refresh_lifetime=timedelta(days=settings.refresh_token_days),
        )


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    refresh_expires_in: int
    token_type: str = "bearer"


def issue_tokens(user: User, policy: TokenPolicy) -> TokenPair:
    def token(kind: str, lifetime: timedelta) -> str:
        return create_token(
            secret=policy.secret,
            user_id=user.id,
            password_hashed=user.password,
            type="access" if kind == "access" else "refresh",
            lifetime=lifetime,
        )

    return TokenPair(
        access_token=token("access", policy.access_lifetime),
        refresh_token=token("refresh", policy.refresh_lifetime),
        expires_in=int(policy.access_lifetime.total_seconds()),
        refresh_expires_in=int(policy.refresh_lifetime.total_seconds()),
    )


WRONG_CREDENTIALS = "the email or username, or the password, is wrong"


async def login(
    session: AsyncSession,
    *,
    login: str,
    password: str,
    policy: TokenPolicy,
    throttle: SignInThrottle,
    address: str | None,
) -> TokenPair:
    """Sign in with an email or a username, any case.

    A missing account and a wrong password get the same answer, and take the same
    time: without an account the password is still checked, against a dummy argon2id
    hash, and a failed check against a Node bcrypt hash (quicker) is drawn out to an
    argon2id check's time (core/security.py). A hash from the Node app (bcrypt) is
    replaced by an argon2id one on success, unless bcrypt did not read the whole password
    given (72 bytes or more: it may be the real one plus a typo; `verify_password`);
    sign-ins racing to replace it all succeed, each with the hash stored by the first.
    Each attempt counts against its account's and its address's limits before the
    password is checked (auth/throttle.py); a success clears the account's counts.

    No pooled connection is held while the password is checked (~100 ms of argon2id, or
    longer queued behind other checks): the account is read on a session of its own,
    closed straight after (`_find_account`), and `session`, which takes its connection at
    its first statement, is used only to store a new hash.
    """
    user = await _find_account(session, login.strip())
    account = account_key(user_id=user.id if user else None, login=login)
    await throttle.admit(account=account, address=address)
    matches, new_hash = await verify_sign_in_password(password, user.password if user else None)
    if user is None or not matches:
        raise InvalidCredentials(WRONG_CREDENTIALS)
    if new_hash is not None and not await repository.replace_password_hash(session, user, new_hash):
        # The hash changed between our read and our write. Most often another sign-in of
        # this account replaced the same bcrypt hash first (a client sending its sign-in
        # twice, several tabs): its argon2id hash is of this same password. Or the password
        # was changed, and the one given is not the account's any more. Check against the
        # hash stored now (READ COMMITTED: this statement sees the committed change the
        # compare-and-set waited for) to tell which. Not `verify_sign_in_password`: its
        # timing rules are for a first check, and this account's existence is known.
        current = await repository.get_user_by_id(session, user.id)
        if current is None:  # deleted meanwhile
            raise InvalidCredentials(WRONG_CREDENTIALS)
        matches, _ = await verify_password_off_loop(password, current.password)
        if not matches:
            raise InvalidCredentials(WRONG_CREDENTIALS)
        # Signed in with the hash stored now (the tokens carry its fingerprint). Should it
        # still not be argon2id, a later sign-in replaces it.
        user = current
    await throttle.succeeded(account=account, address=address)
    return issue_tokens(user, policy)


async def _find_account(session: AsyncSession, login: str) -> User | None:
    """`repository.find_user_by_login` on a session of its own, over what the request's
    `session` is bound to (the engine's pool; the test's connection in the tests), closed
    before this returns: its connection goes back to the pool and the user read, detached,
    keeps the columns read. It reads only, so closing it (a rollback) ends nothing of the
    request's unit of work, which stays the request's session's to commit."""
    async with session_apart(session) as reader:
        return await repository.find_user_by_login(reader, login)


async def refresh(session: AsyncSession, *, refresh_token: str, policy: TokenPolicy) -> TokenPair:
    """A valid refresh token (unexpired, and issued since the last password change, for an
    account that still exists) for a new pair."""
    claims = decode_token(refresh_token, secret=policy.secret, expected="refresh")
    if claims is None:
        raise InvalidRefreshToken("the refresh token is invalid or has expired; sign in again")
    user = await repository.get_user_by_id(session, claims.user_id)
    if user is None or password_fingerprint(policy.secret, user.password) != claims.fingerprint:
        raise InvalidRefreshToken("the refresh token is no longer valid; sign in again")
    return issue_tokens(user, policy)


async def change_password(
    session: AsyncSession,
    user: User,
    *,
    current: str,
    new: str,
    policy: TokenPolicy,
    throttle: SignInThrottle,
    address: str | None,
) -> TokenPair:
    """POST /me/password: every token issued before stops working; the caller gets a
    fresh pair so this client stays signed in."""
    await users.check_password(user, current, throttle=throttle, address=address, field="current")
    new_hash = await hash_password_off_loop(new)
    if not await repository.replace_password_hash(session, user, new_hash):
        # The password was changed (or the account removed) by a concurrent request while
        # `current` was being checked: this request's token is stale, as any request of it
        # after that change is told.
        raise Unauthorized("the access token is no longer valid; sign in again")
    return issue_tokens(user, policy)
