"""The store's configuration, read from the environment and `.env`.

`DATABASE_URL` keeps the exact name and form a Prisma `.env` uses, so an existing
Node deployment's `.env` works unchanged; everything else of ours is `COURSEHUB_*`.

No secret ships in the code: a public default would let anyone who forgot to set one
forge tokens or payment webhooks. In production the secrets must be set (long, random);
elsewhere, unset ones are generated once per installation and kept in
`$COURSEHUB_HOME/secrets.json`, so that tokens survive restarts and `coursehub payments
simulate` signs with the same webhook secret as the local server.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

import limits.errors
from limits.storage import storage_from_string
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coursehub.core.errors import ConfigurationError
from coursehub.core.rates import parse_rate, storage_uri

# A secret shorter than this is refused in production.
MIN_SECRET_LENGTH = 32
DEVELOPMENT_SECRETS_FILE = "secrets.json"
MINUTES_A_YEAR = 525_600
# Environment variable of each secret, as an operator would set it.
SECRET_VARIABLES = {
    "secret_key": "COURSEHUB_SECRET_KEY",
    "payment_webhook_secret": "COURSEHUB_PAYMENT_WEBHOOK_SECRET",
}


# Read from the working directory, as Prisma reads it.
ENV_FILE = ".env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_prefix="COURSEHUB_", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production", "test"] = "development"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "COURSEHUB_DATABASE_URL")
    )
    # Where the embedded PostgreSQL keeps its data when DATABASE_URL is not set.
    home: Path = Field(default=Path(".coursehub"))

    # Empty means unset (see the module's docstring).
    secret_key: SecretStr = SecretStr("")
    # Bounded above: a lifetime past datetime's range made every sign-in overflow (a 500).
    access_token_minutes: int = Field(default=30, ge=1, le=MINUTES_A_YEAR)
    refresh_token_days: int = Field(default=14, ge=1, le=3650)

    payment_webhook_secret: SecretStr = SecretStr("")
    # Mounts POST /api/v1/dev/payments/simulate, which signs and delivers a webhook
    # as the gateway would. For demos; refused in production.
    payment_simulator: bool = False
    pending_order_ttl_minutes: int = Field(default=30, ge=1, le=MINUTES_A_YEAR)
    # How often each server process expires stale pending orders; 0 turns the loop off
    # (then run `coursehub orders expire` from cron).
    order_expiry_interval_seconds: float = Field(default=60, ge=0, le=86_400)

    # Sign-in throttling (auth/throttle.py): attempts in moving windows ("10/15 minutes")
    # per account from one address, per account, and per address; counted in memory (per
    # process) or in Redis ("redis://host:6379", shared by every worker and host; the
    # `redis` extra).
    signin_limit_per_account_and_address: str = "10/15 minutes"
    signin_limit_per_account: str = "100/15 minutes"
    signin_limit_per_address: str = "200/15 minutes"
    rate_limit_storage: str = "memory://"

    # The largest request body the API reads (bytes); a larger one is refused with 413
    # before it is read whole. The largest body the API takes is a course (a 20,000-
    # character description, 30 features): ~250 KB in the worst JSON escaping.
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)

    admin_email: str | None = Field(default=None, validation_alias="ADMIN_EMAIL")
    admin_password: SecretStr | None = Field(default=None, validation_alias="ADMIN_PASSWORD")

    @field_validator(
        "signin_limit_per_account_and_address",
        "signin_limit_per_account",
        "signin_limit_per_address",
    )
    @classmethod
    def _a_rate(cls, value: str) -> str:
        parse_rate(value)  # ValueError, reported as a bad setting, if it is not one rate
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _a_storage(cls, value: str) -> str:
        scheme = value.removeprefix("async+").split("://", 1)[0]
        if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
            raise ValueError("must be memory:// or a redis:// URL")
        try:  # a client is made, not connected: the extra's library must be installed
            storage_from_string(storage_uri(value))
        except limits.errors.ConfigurationError as exc:
            raise ValueError(
                f"{exc} (for Redis, install CourseHub with its `redis` extra)"
            ) from None
        return value

    def production_problems(self) -> list[str]:
        """What stops these settings from serving in production, one phrase each."""
        problems = [
            f"{variable} must be set to a random value of at least {MIN_SECRET_LENGTH} characters"
            for name, variable in SECRET_VARIABLES.items()
            if len(getattr(self, name).get_secret_value()) < MIN_SECRET_LENGTH
        ]
        if self.payment_simulator:
            problems.append(
                "COURSEHUB_PAYMENT_SIMULATOR must be off (it lets buyers pay by pretending)"
            )
        return problems


def with_installation_secrets(settings: Settings) -> Settings:
    """`settings` with every unset secret taken from (or first generated into) the
    installation's secrets file. Safe when several processes start at once: the file
    is written whole under a temporary name and linked into place only if absent.

    A home that cannot hold the file, or a file that does not hold two secrets, is a
    ConfigurationError: one line naming the file and the way out."""
    missing = [name for name in SECRET_VARIABLES if not getattr(settings, name).get_secret_value()]
    if not missing:
        return settings
    path = settings.home / DEVELOPMENT_SECRETS_FILE
    or_set = "set " + " and ".join(SECRET_VARIABLES[name] for name in missing)
    try:
        if not path.exists():
            _generate_secrets(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the installation's secrets to {path} ({_why(exc, settings.home)}); "
            f"set COURSEHUB_HOME to a writable directory, or {or_set}"
        ) from None
    try:
        stored = _read_secrets(path, missing)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the installation's secrets from {path} ({_why(exc, settings.home)}); "
            f"delete the file to make new ones, or {or_set}"
        ) from None
    return settings.model_copy(update={name: SecretStr(stored[name]) for name in missing})


def _why(exc: Exception, home: Path) -> str:
    """What is wrong, in words: an OSError's own message repeats the path."""
    try:
        if home.exists() and not home.is_dir():
            return f"{home} is not a directory"
    except OSError:
        pass  # then the error's own words
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _generate_secrets(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = {name: secrets.token_urlsafe(48) for name in SECRET_VARIABLES}
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    # Created private (0600), not chmod-ed after the write: the secrets are never
    # readable by other local users, not even for a moment.
    temporary.unlink(missing_ok=True)  # left by a crashed process of the same pid
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(generated))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process was first; use its secrets
    finally:
        temporary.unlink()


def _read_secrets(path: Path, names: list[str]) -> dict[str, str]:
    """The secrets `names` from the file; ValueError saying what is wrong with it."""
    try:
        stored = json.loads(path.read_text())
    except ValueError:  # also undecodable bytes
        raise ValueError("it is not JSON") from None
    if not isinstance(stored, dict):
        raise ValueError("it is not a JSON object")
    found = {}
    for name in names:
        value = stored.get(name)
        # Taken as written, null would become the secret "None" and "" no secret at all.
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"{name} is {'missing' if name not in stored else 'not a non-empty string'}"
            )
        found[name] = value
    return found


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each bad setting as the operator wrote it."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        variable = field if field.isupper() else f"COURSEHUB_{field.upper()}"
        parts.append(f"{variable}: {error['msg']}")
    return "invalid setting " + "; ".join(parts)


def read_settings() -> Settings:
    """The settings as configured, without the installation's secrets filled in: for what
    needs no secret (`db stop` needs only the home), so a bad secrets file cannot stop it."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_settings_error(exc)) from None
    # Reading .env (python-dotenv's errors, passed on as they are): the only file read here.
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"cannot read {Path(ENV_FILE).absolute()}: it is not UTF-8 text (byte "
            f"0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {Path(exc.filename or ENV_FILE).absolute()}: {exc.strerror or exc}"
        ) from None


@lru_cache
def get_settings() -> Settings:
    settings = read_settings()
    if settings.environment == "production":
        return settings  # never generated: `check_production_settings` insists on real ones
    return with_installation_secrets(settings)
