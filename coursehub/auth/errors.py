"""What signing in can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import StoreError, Unauthorized


class InvalidCredentials(Unauthorized):
    """The same answer whether the account is missing or the password is wrong."""

    code = "invalid_credentials"
    title = "The login or the password is wrong"


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    title = "The refresh token is invalid or has expired"


class TooManySignInAttempts(StoreError):
    """Too many sign-in attempts for the account or from the address (auth/throttle.py)."""

    status = 429
    code = "too_many_attempts"
    title = "Too many sign-in attempts; wait before trying again"
