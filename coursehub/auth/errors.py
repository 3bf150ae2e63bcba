"""What signing in can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import Unauthorized


class InvalidCredentials(Unauthorized):
    """The same answer whether the account is missing or the password is wrong."""

    code = "invalid_credentials"
    title = "The login or the password is wrong"


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    title = "The refresh token is invalid or has expired"
