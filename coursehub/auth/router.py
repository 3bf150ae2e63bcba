"""Signing up and in over HTTP: register, login, refresh, and the password change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from coursehub.auth import service
from coursehub.auth.dependencies import (
    ClientAddressDep,
    PasswordCheckingUser,
    Public,
    SettingsDep,
    ThrottleDep,
)
from coursehub.auth.errors import InvalidCredentials, InvalidRefreshToken, TooManySignInAttempts
from coursehub.auth.schemas import (
    LoginRequest,
    PasswordChangeRequest,
    RefreshRequest,
    TokenPairRead,
)
from coursehub.auth.service import TokenPolicy
from coursehub.core.dependencies import SessionDep, WriteTransactionDep
from coursehub.core.errors import Unauthorized
from coursehub.core.problems import responses
from coursehub.users import service as users
from coursehub.users.errors import EmailTaken, UsernameTaken, WrongPassword
from coursehub.users.schemas import UserCreate, UserRead

router = APIRouter(tags=["accounts"])


def token_policy(settings: SettingsDep) -> TokenPolicy:
    return TokenPolicy.from_settings(settings)


PolicyDep = Annotated[TokenPolicy, Depends(token_policy)]


@router.post(
    "/auth/register",
    dependencies=[Public],
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=responses(EmailTaken, UsernameTaken),
)
async def register(writer: WriteTransactionDep, body: UserCreate) -> UserRead:
    """Create an account. Email and username are stored lower-case; either one taken (in
    any case) is a 409 naming the field."""
    user = await users.register(writer, body)
    return UserRead.model_validate(user)


@router.post(
    "/auth/login",
    dependencies=[Public],
    response_model=TokenPairRead,
    responses=responses(InvalidCredentials, TooManySignInAttempts),
)
async def login(
    session: SessionDep,
    policy: PolicyDep,
    throttle: ThrottleDep,
    address: ClientAddressDep,
    body: LoginRequest,
) -> TokenPairRead:
    """Sign in with an email or a username and the password: an access token and a
    refresh token. Attempts are limited per account and per address (429 with
    Retry-After beyond)."""
    pair = await service.login(
        session,
        login=body.login,
        password=body.password,
        policy=policy,
        throttle=throttle,
        address=address,
    )
    return TokenPairRead.model_validate(pair)


@router.post(
    "/auth/refresh",
    dependencies=[Public],
    response_model=TokenPairRead,
    responses=responses(InvalidRefreshToken),
)
async def refresh(session: SessionDep, policy: PolicyDep, body: RefreshRequest) -> TokenPairRead:
    """Trade a refresh token for a new access token and refresh token."""
    pair = await service.refresh(session, refresh_token=body.refresh_token, policy=policy)
    return TokenPairRead.model_validate(pair)


@router.post(
    "/me/password",
    response_model=TokenPairRead,
    responses=responses(WrongPassword, Unauthorized, TooManySignInAttempts),
)
async def change_password(
    session: SessionDep,
    user: PasswordCheckingUser,
    policy: PolicyDep,
    throttle: ThrottleDep,
    address: ClientAddressDep,
    body: PasswordChangeRequest,
) -> TokenPairRead:
    """Change the password. Every token issued before stops working; the answer is a
    fresh pair for this client. Guesses at the current password count as sign-in
    attempts (429 beyond the limits)."""
    pair = await service.change_password(
        session,
        user,
        current=body.current,
        new=body.new,
        policy=policy,
        throttle=throttle,
        address=address,
    )
    return TokenPairRead.model_validate(pair)
