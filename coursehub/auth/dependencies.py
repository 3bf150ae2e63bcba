"""Who is calling, and the access policy every route declares.

Every route carries exactly one of three policies in its dependencies:
`Public` (anyone), `CurrentUser` (signed in) or `AdminUser` (signed-in admin);
`WritingUser` and `WritingAdmin` are the same two for a route whose unit of work is a
write transaction, and `PasswordCheckingUser` the signed-in caller of a route that checks
their password (read apart, so no connection is held through the check).
tests/auth/test_access_policy.py walks the route table and fails on a route
that declares none, so a new route cannot escape the rule by omission.

The role is read from the database on every request, never trusted from the
token, so a role change takes effect on the next request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from coursehub.auth.throttle import SignInThrottle
from coursehub.core.database import session_apart
from coursehub.core.dependencies import ReadConnectionDep, SessionDep, WriteTransactionDep
from coursehub.core.errors import Forbidden, Unauthorized
from coursehub.core.pagination import CursorCodec
from coursehub.core.security import TokenClaims, decode_token, password_fingerprint
from coursehub.core.settings import Settings
from coursehub.core.sql import Reader
from coursehub.users.models import Role, User
from coursehub.users.repository import get_user_by_id

bearer = HTTPBearer(auto_error=False, description="An access token from POST /auth/login")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_signin_throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle = request.app.state.signin_throttle
    return throttle


def client_address(request: Request) -> str | None:
    """The caller's address: the peer's, or a trusted proxy's X-Forwarded-For (uvicorn's
    proxy_headers, trusting FORWARDED_ALLOW_IPS, 127.0.0.1 by default)."""
    return request.client.host if request.client is not None else None


ThrottleDep = Annotated[SignInThrottle, Depends(get_signin_throttle)]
ClientAddressDep = Annotated[str | None, Depends(client_address)]


@lru_cache(maxsize=4)
def _cursor_codec_for(secret: str) -> CursorCodec:
    return CursorCodec(secret)


def cursor_codec(settings: SettingsDep) -> CursorCodec:
    """The signer of this app's pagination cursors (made once per secret)."""
    return _cursor_codec_for(settings.secret_key.get_secret_value())


CodecDep = Annotated[CursorCodec, Depends(cursor_codec)]


async def public() -> None:
    """The policy of routes anyone may call."""


def _token_claims(
    settings: Settings, credentials: HTTPAuthorizationCredentials
) -> tuple[str, TokenClaims]:
    secret = settings.secret_key.get_secret_value()
    claims = decode_token(credentials.credentials, secret=secret, expected="access")
    if claims is None:
        raise Unauthorized("the access token is invalid or has expired")
    return secret, claims


async def _token_user(reader: Reader, secret: str, claims: TokenClaims) -> User:
    """The token's user, read on the request's connection (whichever unit of work it is):
    401 if they are gone or their password changed since the token was signed."""
    user = await get_user_by_id(reader, claims.user_id)
    if user is None or password_fingerprint(secret, user.password) != claims.fingerprint:
        raise Unauthorized("the access token is no longer valid; sign in again")
    return user


async def optional_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """The signed-in user, or None for an anonymous caller. A token that is present
    but invalid is still an error: a client should know its token is bad."""
    if credentials is None:
        return None
    secret, claims = _token_claims(settings, credentials)
    return await _token_user(session, secret, claims)


async def optional_viewer(
    reader: ReadConnectionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """`optional_user` for routes that only read, on their read connection: no session,
    and no query at all for an anonymous caller. The user belongs to no session."""
    if credentials is None:
        return None
    secret, claims = _token_claims(settings, credentials)
    return await _token_user(reader, secret, claims)


NOT_SIGNED_IN = "sign in first: this needs an access token"


async def require_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise Unauthorized(NOT_SIGNED_IN)
    return user


async def access_claims(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> tuple[str, TokenClaims]:
    """(secret, claims) of the request's valid access token; 401 without one."""
    if credentials is None:
        raise Unauthorized(NOT_SIGNED_IN)
    return _token_claims(settings, credentials)


async def require_user_writing(
    # The token first, the write transaction second: FastAPI solves a dependency's
    # dependencies in order, so a request without a valid token is refused before the
    # transaction is even set up (it would take no connection anyway: it begins with its
    # first statement, here the read of the caller).
    claims: Annotated[tuple[str, TokenClaims], Depends(access_claims)],
    writer: WriteTransactionDep,
) -> User:
    """`require_user` for routes whose unit of work is a write transaction (checkout,
    the admins' account changes through `require_admin_writing`): the caller is read on
    that transaction's connection, so the request needs no session. The user belongs to no
    session. Such a route declares its `WritingUser`/`WritingAdmin` before its
    `WriteTransactionDep`, for the same reason."""
    secret, token = claims
    return await _token_user(writer, secret, token)


async def require_user_read_apart(
    claims: Annotated[tuple[str, TokenClaims], Depends(access_claims)], session: SessionDep
) -> User:
    """`require_user` for routes that check the caller's password (POST /me/password,
    DELETE /me): the caller is read on a session of its own over what the request's session
    is bound to (the pool; the test's connection in the tests), closed at once, so no pooled
    connection is held through the ~100 ms of argon2id (longer, queued behind other checks)
    that follow; the request's session takes one at its first statement, the write. The
    user belongs to no session."""
    secret, token = claims
    async with session_apart(session) as reader:
        return await _token_user(reader, secret, token)


def _admin(user: User) -> User:
    if user.role != Role.admin:
        raise Forbidden("this needs the admin role")
    return user


async def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    return _admin(user)


async def require_admin_writing(user: Annotated[User, Depends(require_user_writing)]) -> User:
    """`require_admin` for routes whose unit of work is a write transaction."""
    return _admin(user)


Public = Depends(public)
CurrentUser = Annotated[User, Depends(require_user)]
# CurrentUser for a route that checks the caller's password before it writes.
PasswordCheckingUser = Annotated[User, Depends(require_user_read_apart)]
# CurrentUser and AdminUser for a route that writes in a write transaction
# (WriteTransactionDep): the caller is read on that transaction's connection.
WritingUser = Annotated[User, Depends(require_user_writing)]
WritingAdmin = Annotated[User, Depends(require_admin_writing)]
AdminUser = Annotated[User, Depends(require_admin)]
# What a route behind AdminUser can answer with before it runs.
ADMIN_ERRORS = (Unauthorized, Forbidden)
OptionalViewer = Annotated[User | None, Depends(optional_viewer)]
