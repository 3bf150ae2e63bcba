"""`DATABASE_URL` in the form Prisma reads it, turned into asyncpg and pool settings.

An existing Prisma `.env` must work unchanged, so the URL keeps Prisma's
parameters and meanings: `schema`, `connection_limit`, `pool_timeout`,
`connect_timeout`, `sslmode`, `pgbouncer` and friends. A parameter we do not know
is an error that names it, rather than something silently ignored.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from uuid import uuid4

from sqlalchemy.engine import URL

from coursehub.core.errors import ConfigurationError

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Parameters Prisma documents for PostgreSQL, plus `host` (a Unix-socket
# directory, as libpq and Prisma accept it) and `application_name`.
KNOWN_PARAMETERS = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "connect_timeout",
        "socket_timeout",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslpassword",
        "pgbouncer",
        "statement_cache_size",
        "application_name",
        "host",
    }
)


def default_pool_size() -> int:
    """Prisma's default `connection_limit`: number of CPUs × 2 + 1."""
    return (os.cpu_count() or 1) * 2 + 1


@dataclass(frozen=True)
class DatabaseConfig:
    """Everything needed to connect to one PostgreSQL database."""

    user: str
    password: str | None
    host: str  # a host name, an address, or a Unix-socket directory (starts with "/")
    port: int
    database: str
    schema: str = "public"
    pool_size: int = 0  # 0: Prisma's default, resolved by `effective_pool_size`
    pool_timeout: float = 10.0
    connect_timeout: float = 5.0
    socket_timeout: float | None = None
    sslmode: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    sslrootcert: str | None = None
    sslpassword: str | None = None
    pgbouncer: bool = False
    statement_cache_size: int = 100
    application_name: str = "coursehub"

    @property
    def effective_pool_size(self) -> int:
        return self.pool_size or default_pool_size()

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    def with_database(self, database: str) -> DatabaseConfig:
        return replace(self, database=database)

    def redacted(self) -> str:
        """The URL for display: the password is never shown."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":***"
        if self.is_socket:
            return f"postgresql://{auth}@/{self.database}?host={self.host}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.database}"

    def to_url(self) -> str:
        """The URL with its password: for handing to a child process, never for display."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        params = [("host", self.host)] if self.is_socket else []
        if self.schema != "public":
            params.append(("schema", self.schema))
        if self.sslmode:
            params.append(("sslmode", self.sslmode))
        if self.pool_size:
            params.append(("connection_limit", str(self.pool_size)))
        if self.pgbouncer:
            params.append(("pgbouncer", "true"))
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params)
        location = "" if self.is_socket else f"{self.host}:{self.port}"
        return f"postgresql://{auth}@{location}/{quote(self.database, safe='')}" + (
            f"?{query}" if query else ""
        )

    def sqlalchemy_url(self) -> URL:
        return URL.create(
            "postgresql+asyncpg",
            username=self.user,
            password=self.password,
            host=None if self.is_socket else self.host,
            port=None if self.is_socket else self.port,
            database=self.database,
        )

    def server_settings(self) -> dict[str, str]:
        # Times are stored as UTC in `timestamp without time zone` (as Prisma does),
        # so the session time zone must be UTC for CURRENT_TIMESTAMP to agree.
        settings = {"timezone": "UTC", "application_name": self.application_name}
        if not self.pgbouncer:
            # The store's units of work are written for READ COMMITTED, one snapshot a
            # statement: a count taken after a lock sees what its holders committed
            # (checkout's coupon claims, coupons/repository.py). A role or database
            # defaulting to REPEATABLE READ would take the snapshot earlier, silently.
            # PgBouncer refuses startup parameters it does not track: behind it, the write
            # transactions say READ COMMITTED in their BEGIN (core/database.py).
            settings["default_transaction_isolation"] = "read committed"
        if self.schema != "public":
            settings["search_path"] = f'"{self.schema}"'
        return settings

    def asyncpg_connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `asyncpg.connect` / `create_pool`."""
        kwargs: dict[str, Any] = {
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            # Prisma reads 0 as "no limit"; asyncpg wants a number.
            "timeout": self.connect_timeout or 24 * 3600.0,
            "server_settings": self.server_settings(),
            # PgBouncer in transaction mode cannot keep prepared statements
            # across transactions, so none are cached.
            "statement_cache_size": 0 if self.pgbouncer else self.statement_cache_size,
        }
        if self.socket_timeout is not None:
            kwargs["command_timeout"] = self.socket_timeout
        ssl_arg = self._ssl_argument()
        if ssl_arg is not None:
            kwargs["ssl"] = ssl_arg
        return kwargs

    def sqlalchemy_connect_args(self) -> dict[str, Any]:
        kwargs = self.asyncpg_connect_kwargs()
        for key in ("user", "password", "database", "port"):
            kwargs.pop(key)
        if not self.is_socket:
            kwargs.pop("host")
        if self.pgbouncer:
            # SQLAlchemy's own statement cache must be off too, and prepared
            # statements named uniquely so two clients behind one server
            # connection cannot collide.
            kwargs["prepared_statement_cache_size"] = 0
            kwargs["prepared_statement_name_func"] = lambda: f"__coursehub_{uuid4()}__"
        return kwargs

    def _ssl_argument(self) -> str | ssl.SSLContext | None:
        if self.sslmode is None:
            return None
        if not (self.sslrootcert or self.sslcert):
            return self.sslmode
        if self.sslmode in ("disable", "allow", "prefer"):
            return self.sslmode
        context = ssl.create_default_context(cafile=self.sslrootcert)
        if self.sslcert:
            context.load_cert_chain(self.sslcert, self.sslkey, password=self.sslpassword)
        context.check_hostname = self.sslmode == "verify-full"
        if self.sslmode == "require":
            context.verify_mode = ssl.CERT_NONE
        return context

    def libpq_environment(self) -> dict[str, str]:
        """Environment for pg_dump, pg_restore and psql to reach this database."""
        env = {
            "PGUSER": self.user,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            "PGCONNECT_TIMEOUT": str(max(1, int(self.connect_timeout))),
            "PGAPPNAME": self.application_name,
            "PGTZ": "UTC",
        }
        if self.password:
            env["PGPASSWORD"] = self.password
        optional = {
            "PGSSLMODE": self.sslmode,
            "PGSSLCERT": self.sslcert,
            "PGSSLKEY": self.sslkey,
            "PGSSLROOTCERT": self.sslrootcert,
        }
        env.update({k: v for k, v in optional.items() if v})
        if self.schema != "public":
            env["PGOPTIONS"] = f"-c search_path={self.schema}"
        return env


def _number(name: str, raw: str, *, minimum: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"DATABASE_URL parameter {name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigurationError(f"DATABASE_URL parameter {name} must be at least {minimum:g}")
    return value


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigurationError(f"DATABASE_URL parameter {name}={raw!r} must be true or false")


def parse_database_url(url: str) -> DatabaseConfig:
    """Parse a `postgresql://user:password@host:port/db?params` URL the way Prisma does."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            "DATABASE_URL must start with postgresql:// "
            f"(got {parts.scheme + '://' if parts.scheme else 'no scheme'})"
        )
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in KNOWN_PARAMETERS:
            known = ", ".join(sorted(KNOWN_PARAMETERS))
            raise ConfigurationError(
                f"DATABASE_URL has an unknown parameter {key!r}; known parameters: {known}"
            )
        params[key] = value

    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigurationError("DATABASE_URL has an invalid port") from None
    host = params.get("host") or (unquote(parts.hostname) if parts.hostname else "localhost")
    database = unquote(parts.path.lstrip("/")) or "postgres"
    config = DatabaseConfig(
        user=unquote(parts.username) if parts.username else "postgres",
        password=unquote(parts.password) if parts.password else None,
        host=host,
        port=port,
        database=database,
    )

    changes: dict[str, Any] = {}
    if "schema" in params:
        if not params["schema"]:
            raise ConfigurationError("DATABASE_URL parameter schema is empty")
        changes["schema"] = params["schema"]
    if "connection_limit" in params:
        changes["pool_size"] = int(
            _number("connection_limit", params["connection_limit"], minimum=1)
        )
    if "pool_timeout" in params:
        changes["pool_timeout"] = _number("pool_timeout", params["pool_timeout"], minimum=0)
    if "connect_timeout" in params:
        changes["connect_timeout"] = _number(
            "connect_timeout", params["connect_timeout"], minimum=0
        )
    if "socket_timeout" in params:
        changes["socket_timeout"] = _number("socket_timeout", params["socket_timeout"], minimum=0)
    if "statement_cache_size" in params:
        changes["statement_cache_size"] = int(
            _number("statement_cache_size", params["statement_cache_size"], minimum=0)
        )
    if "sslmode" in params:
        if params["sslmode"] not in SSL_MODES:
            raise ConfigurationError(
                f"DATABASE_URL parameter sslmode={params['sslmode']!r} must be one of "
                + ", ".join(SSL_MODES)
            )
        changes["sslmode"] = params["sslmode"]
    for name in ("sslcert", "sslkey", "sslrootcert", "sslpassword", "application_name"):
        if params.get(name):
            changes[name] = params[name]
    if "pgbouncer" in params:
        changes["pgbouncer"] = _boolean("pgbouncer", params["pgbouncer"])
    return replace(config, **changes)
