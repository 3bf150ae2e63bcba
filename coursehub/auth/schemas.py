"""Signing in's API shapes (camelCase, as the rest of the API)."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from coursehub.users.schemas import AccountModel, GivenPassword, NewPassword

# In Unicode's composed form (NFC), as sign-up stores an email (email-validator
# normalises it): "zoë" typed as o + combining diaeresis still finds the account.
Login = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=254),
    AfterValidator(lambda login: unicodedata.normalize("NFC", login)),
    Field(description="The account's email or username, any case."),
]


class LoginRequest(AccountModel):
    login: Login
    password: GivenPassword


class RefreshRequest(AccountModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class PasswordChangeRequest(AccountModel):
    current: GivenPassword
    new: NewPassword


class TokenPairRead(AccountModel):
    """Send `accessToken` as `Authorization: Bearer …`; trade `refreshToken` at
    POST /auth/refresh before it expires."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid for.")
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid for.")
