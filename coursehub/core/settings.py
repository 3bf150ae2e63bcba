"""The store's configuration, read from the environment and `.env`.

`DATABASE_URL` keeps the exact name and form a Prisma `.env` uses, so an existing
Node deployment's `.env` works unchanged; everything else of ours is `COURSEHUB_*`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that ship in the code. Fine for development and tests; the store refuses
# to start in production while either is still in use.
DEFAULT_SECRET_KEY = "coursehub-development-secret-do-not-use-in-production"
DEFAULT_WEBHOOK_SECRET = "coursehub-development-webhook-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_prefix="COURSEHUB_", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production", "test"] = "development"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "COURSEHUB_DATABASE_URL")
    )
    # Where the embedded PostgreSQL keeps its data when DATABASE_URL is not set.
    home: Path = Field(default=Path(".coursehub"))

    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    access_token_minutes: int = Field(default=30, ge=1)
    refresh_token_days: int = Field(default=14, ge=1)

    payment_webhook_secret: SecretStr = SecretStr(DEFAULT_WEBHOOK_SECRET)
    # Mounts POST /api/v1/dev/payments/simulate, which signs and delivers a webhook
    # as the gateway would. For demos; never on in production.
    payment_simulator: bool = False
    pending_order_ttl_minutes: int = Field(default=30, ge=1)
    # How often each server process expires stale pending orders; 0 turns the loop off
    # (then run `coursehub orders expire` from cron).
    order_expiry_interval_seconds: float = Field(default=60, ge=0)

    admin_email: str | None = Field(default=None, validation_alias="ADMIN_EMAIL")
    admin_password: SecretStr | None = Field(default=None, validation_alias="ADMIN_PASSWORD")

    def insecure_defaults(self) -> list[str]:
        """Names of the secrets still at their shipped development values."""
        found = []
        if self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
            found.append("COURSEHUB_SECRET_KEY")
        if self.payment_webhook_secret.get_secret_value() == DEFAULT_WEBHOOK_SECRET:
            found.append("COURSEHUB_PAYMENT_WEBHOOK_SECRET")
        return found


@lru_cache
def get_settings() -> Settings:
    return Settings()
