"""`DATABASE_URL` in the form Prisma reads it, turned into asyncpg and pool settings.

An existing Prisma `.env` must work unchanged, so the URL keeps Prisma's
parameters and meanings: every one Prisma's PostgreSQL connector reads (`schema`,
`connection_limit`, `pool_timeout`, `connect_timeout`, `socket_timeout`, `sslmode`,
`sslcert`, `sslidentity`, `sslpassword`, `sslaccept`, `host`, `pgbouncer`,
`statement_cache_size`, `application_name`, `channel_binding`, `options`,
`max_connection_lifetime`, `max_idle_connection_lifetime`). A parameter we do not know, or
a value the driver or the client tools would refuse or misread, is an error that names it,
rather than something silently ignored; so is one asking for what the driver cannot give
(`channel_binding=require`: asyncpg cannot bind a SCRAM login to TLS).

TLS follows Prisma, and libpq where the two do not clash. Prisma's `sslcert` is the
certificate of the CA to verify the server with, `sslidentity` a PKCS12 file holding the
client's certificate and key (`sslpassword` its password), and `sslaccept` says whether the
server's certificate is verified at all (`strict`, with its host name) or not
(`accept_invalid_certs`, Prisma's default). With `sslkey` in the URL it is a libpq URL:
`sslcert` is then the client's certificate, `sslkey` its key (`sslpassword` the key's),
`sslrootcert` the CA's certificate. Relative paths are taken from the current directory
(Prisma takes them from its ./prisma directory).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import math
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from uuid import uuid4

import asyncpg
from asyncpg.transaction import Transaction
from sqlalchemy.engine import URL

from coursehub.core.errors import ConfigurationError, first_line

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Prisma's `sslaccept`: verify the server's certificate (and host name), or accept any.
SSL_ACCEPT_MODES = ("strict", "accept_invalid_certs")
# libpq's (PostgreSQL 16+) `sslrootcert` value for the system's trusted CAs.
SYSTEM_CAS = "system"
# The largest number of seconds (and count) a parameter may hold: libpq reads
# PGCONNECT_TIMEOUT as a C int, and nothing here needs more.
LARGEST_NUMBER = 2**31 - 1

# The parameters Prisma's PostgreSQL connector reads (prisma-engines, quaint's
# `PostgresNativeUrl::parse_query_params`; its docs list all but the two connection
# lifetimes), plus libpq's `sslkey` and `sslrootcert`.
KNOWN_PARAMETERS = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "connect_timeout",
        "socket_timeout",
        "max_connection_lifetime",
        "max_idle_connection_lifetime",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslidentity",
        "sslpassword",
        "sslaccept",
        "channel_binding",
        "pgbouncer",
        "statement_cache_size",
        "application_name",
        "options",
        "host",
    }
)
# libpq's and Prisma's `channel_binding` values. `require` is refused (`_channel_binding`).
CHANNEL_BINDING_MODES = ("disable", "prefer", "require")
# Prisma's default is no limit. Ours replaces a connection after 30 minutes: the pool hands
# out the connection returned last, so those at its bottom can sit idle that long, and a
# firewall or PgBouncer may have dropped them meanwhile (core/database.py `create_engine`).
DEFAULT_MAX_CONNECTION_LIFETIME = 1800.0
# Server settings CourseHub makes itself, which `options` may not set: why, and what to do.
_SETTINGS_OF_OUR_OWN = {
    "search_path": "give the schema with the schema parameter",
    "application_name": "give it with the application_name parameter",
    "timezone": "its sessions keep UTC, as times are stored in UTC",
    "default_transaction_isolation": (
        "its transactions rely on READ COMMITTED (checkout's coupon limits)"
    ),
}
_FILE_PARAMETERS = ("sslcert", "sslkey", "sslrootcert", "sslidentity")

Verification = Literal["none", "chain", "full"]


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
    pool_timeout: float = 10.0  # 0: no limit
    connect_timeout: float = 5.0  # 0: no limit
    socket_timeout: float | None = None  # None: no limit
    sslmode: str | None = None
    # The TLS parameters as the URL gives them (files as absolute paths); what they mean
    # depends on each other (the module's docstring): see `tls_mode` and `_ssl_argument`.
    sslcert: str | None = None
    sslkey: str | None = None
    sslrootcert: str | None = None
    sslidentity: str | None = None
    sslpassword: str | None = None
    sslaccept: str | None = None
    pgbouncer: bool = False
    statement_cache_size: int = 100
    application_name: str = "coursehub"
    # Server settings from `options` (`-c name=value`), in the order given: sent with the
    # store's own at connect, and to the client tools as PGOPTIONS.
    options: tuple[tuple[str, str], ...] = ()
    # `disable` or `prefer` (`require` is refused when parsing): the client tools get it.
    # The store's connections never bind their login to TLS, which asyncpg cannot do.
    channel_binding: str | None = None
    # Seconds; 0: no limit. The pool replaces a connection older than the first, or idle
    # longer than the second, before handing it out (core/database.py `create_engine`).
    max_connection_lifetime: float = DEFAULT_MAX_CONNECTION_LIFETIME
    max_idle_connection_lifetime: float = 0.0
    # The embedded server's (core/embedded.py), not one DATABASE_URL names: said in errors,
    # which then point at the server CourseHub runs rather than at a URL nobody set.
    embedded: bool = False

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
        location, host_parameter = self._location()
        shown = f"postgresql://{auth}@{location}/{self.database}"
        # The port too for a socket: it names the socket file (.s.PGSQL.<port>), so the server.
        return shown + (f"?host={host_parameter}" if host_parameter else "")

    def _location(self) -> tuple[str, str | None]:
        """The URL's `host:port`, and the `host` parameter the host must be given in instead
        (then "localhost" stands in the URL, as Prisma documents): a Unix-socket directory,
        or a name with a colon that is no IPv6 address a URL can hold in brackets."""
        if self.is_socket:
            return f"localhost:{self.port}", self.host
        if ":" not in self.host:
            return f"{quote(self.host, safe='')}:{self.port}", None
        in_brackets = quote(self.host, safe=":")  # a zone's "%" as "%25"
        try:
            # What urlsplit accepts in brackets.
            ipaddress.IPv6Address(in_brackets)
        except ValueError:
            return f"localhost:{self.port}", self.host
        return f"[{in_brackets}]:{self.port}", None

    def to_url(self) -> str:
        """The URL with its password: for handing to a child process, never for display.
        `parse_database_url` reads it back as this same configuration."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        location, host_parameter = self._location()
        params = [("host", host_parameter)] if host_parameter else []
        if self.schema != "public":
            params.append(("schema", self.schema))
        if self.pool_size:
            params.append(("connection_limit", str(self.pool_size)))
        defaults = DatabaseConfig("", None, "", 0, "")
        for name in (
            "pool_timeout",
            "connect_timeout",
            "socket_timeout",
            "max_connection_lifetime",
            "max_idle_connection_lifetime",
        ):
            seconds = getattr(self, name)
            if seconds != getattr(defaults, name):
                params.append((name, _seconds_text(seconds)))
        if self.statement_cache_size != defaults.statement_cache_size:
            params.append(("statement_cache_size", str(self.statement_cache_size)))
        if self.application_name != defaults.application_name:
            params.append(("application_name", self.application_name))
        if self.options:
            params.append(("options", self.options_text()))
        for name in ("sslmode", *_FILE_PARAMETERS, "sslpassword", "sslaccept", "channel_binding"):
            value = getattr(self, name)
            if value:
                params.append((name, value))
        if self.pgbouncer:
            params.append(("pgbouncer", "true"))
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params)
        return f"postgresql://{auth}@{location}/{quote(self.database, safe='')}" + (
            f"?{query}" if query else ""
        )

    def options_text(self) -> str:
        """The `options` settings as the server reads them (libpq's PGOPTIONS): `-c name=value`
        each, a space or backslash in them escaped with a backslash."""
        return " ".join(
            f"-c {_escaped_option(name)}={_escaped_option(value)}" for name, value in self.options
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

    @property
    def schema_per_transaction(self) -> bool:
        """Whether the schema is set at the start of each transaction rather than once, at
        connect: behind PgBouncer (which refuses `search_path` as a startup parameter, and
        hands each transaction whichever server connection is free), for a schema other
        than the server's default."""
        return self.pgbouncer and self.schema != "public"

    def server_settings(self) -> dict[str, str]:
        # Times are stored as UTC in `timestamp without time zone` (as Prisma does),
        # so the session time zone must be UTC for CURRENT_TIMESTAMP to agree.
        settings = {"timezone": "UTC", "application_name": self.application_name}
        # `options`: none of them is one of the above (`_server_options` refuses those).
        # Behind PgBouncer each must be a parameter it tracks (`track_extra_parameters`),
        # or it refuses the connection, naming the parameter: so does PgBouncer 1.20+ for
        # the same settings in `options`, as Prisma sends them.
        settings.update(self.options)
        if not self.pgbouncer:
            # The store's units of work are written for READ COMMITTED, one snapshot a
            # statement: a count taken after a lock sees what its holders committed
            # (checkout's coupon claims, coupons/repository.py). A role or database
            # defaulting to REPEATABLE READ would take the snapshot earlier, silently.
            # PgBouncer refuses startup parameters it does not track: behind it, the write
            # transactions say READ COMMITTED in their BEGIN (core/database.py).
            settings["default_transaction_isolation"] = "read committed"
            if self.schema != "public":
                settings["search_path"] = quoted_identifier(self.schema)
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
        if self.schema_per_transaction:
            kwargs["connection_class"] = _connection_class_setting_search_path(self.schema)
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

    # --- TLS -----------------------------------------------------------------------

    @property
    def _ca_file(self) -> str | None:
        """The CA certificate to verify the server with: libpq's `sslrootcert`, or Prisma's
        `sslcert` when no `sslkey` makes it a client certificate. None for the system's."""
        if self.sslrootcert:
            return None if self.sslrootcert == SYSTEM_CAS else self.sslrootcert
        return None if self.sslkey else self.sslcert

    @property
    def _has_client_certificate(self) -> bool:
        return bool(self.sslidentity or self.sslkey)

    @property
    def _verification(self) -> Verification:
        """What of the server's certificate is verified: nothing, its chain up to a trusted
        CA, or its chain and that it names the host."""
        mode = self.sslmode
        if mode == "disable":
            return "none"
        if mode == "verify-full" or self.sslaccept == "strict" or self.sslrootcert == SYSTEM_CAS:
            # libpq refuses the system's CAs with less than verify-full (a public CA vouches
            # for many servers: only the host name says it is this one).
            return "full"
        if mode == "verify-ca" or (mode == "require" and self.sslrootcert):
            # libpq: `require` with a root certificate given verifies as `verify-ca` does.
            return "chain"
        return "none"

    @property
    def tls_mode(self) -> str | None:
        """The sslmode the connections use, in libpq's words (None: the driver's default,
        `prefer`). What Prisma's parameters ask for is said in it: `sslaccept=strict` is
        `verify-full`; a client certificate or a certificate to verify makes TLS required
        (Prisma's `prefer` would go on without TLS if the server has none)."""
        if self.sslmode == "disable":
            return "disable"
        verification = self._verification
        if verification == "full":
            return "verify-full"
        if verification == "chain":
            return "verify-ca"
        if self._has_client_certificate and self.sslmode in (None, "allow", "prefer"):
            return "require"
        return self.sslmode

    def _ssl_argument(self) -> str | ssl.SSLContext | None:
        mode = self.tls_mode
        if mode in (None, "disable", "allow", "prefer"):
            return mode
        verification = self._verification
        builds_context = (
            self._has_client_certificate
            or self.sslaccept == "strict"
            or (verification != "none" and (self._ca_file or self.sslrootcert))
        )
        if not builds_context:
            # asyncpg reads the mode as libpq does (~/.postgresql/root.crt included).
            return mode
        return self._ssl_context(verification)

    def _ssl_context(self, verification: Verification) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # as asyncpg's own contexts
        if verification == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = verification == "full"
            context.verify_mode = ssl.CERT_REQUIRED
            ca_file = self._ca_file
            if ca_file:
                parameter = "sslrootcert" if self.sslrootcert else "sslcert"
                with _loading(f"parameter {parameter}: cannot use {ca_file} as the CA certificate"):
                    context.load_verify_locations(cafile=ca_file)
            if not ca_file or self.sslaccept == "strict":
                # Prisma's strict trusts the system's CAs besides its `sslcert`.
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.sslidentity:
            certificate, key = _read_pkcs12(self.sslidentity, self.sslpassword)
            with (
                _private_files(certificate, key) as (certificate_file, key_file),
                _loading(f"parameter sslidentity: cannot use {self.sslidentity}"),
            ):
                context.load_cert_chain(certificate_file, key_file)
        elif self.sslkey:
            assert self.sslcert is not None  # the parser requires it with sslkey
            reading = (
                f"parameters sslcert and sslkey: cannot use the client certificate {self.sslcert} "
                f"with the key {self.sslkey}"
            )
            with _loading(reading, password_hint=True):
                # An empty password rather than None, which makes OpenSSL ask the terminal.
                context.load_cert_chain(self.sslcert, self.sslkey, password=self.sslpassword or "")
        return context

    def libpq_environment(self) -> dict[str, str]:
        """Environment for pg_dump, pg_restore and psql to reach this database.

        The same TLS as the store's connections. libpq reads neither PKCS12 files nor a
        key's password from the environment: for those the tools get the certificate and
        the decrypted key as PEM files of this process's own (mode 600, in a private
        directory removed when the process ends)."""
        env = {
            "PGUSER": self.user,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            # libpq reads whole seconds, 0 as no limit (as Prisma); a fraction rounds up,
            # so that a short limit does not become none.
            "PGCONNECT_TIMEOUT": str(math.ceil(self.connect_timeout)),
            "PGAPPNAME": self.application_name,
            "PGTZ": "UTC",
        }
        if self.password:
            env["PGPASSWORD"] = self.password
        mode = self.tls_mode
        if mode:
            env["PGSSLMODE"] = mode
        if mode != "disable":
            env.update(self._libpq_tls_files())
        if self.channel_binding:
            env["PGCHANNELBINDING"] = self.channel_binding
        # The URL's `options`, but no search_path: pg_dump is given the schema (`--schema`)
        # and the restore's SQL names it; PgBouncer refuses it besides.
        if self.options:
            env["PGOPTIONS"] = self.options_text()
        return env

    def _libpq_tls_files(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self._verification != "none":
            if self._ca_file:
                env["PGSSLROOTCERT"] = self._ca_file
            elif self.sslrootcert == SYSTEM_CAS or self.sslaccept == "strict":
                env["PGSSLROOTCERT"] = _system_ca_file()
        if self.sslidentity:
            certificate, key = _pem_files_for_tools(self.sslidentity, self.sslpassword, pkcs12=True)
            env.update(PGSSLCERT=certificate, PGSSLKEY=key)
        elif self.sslkey:
            assert self.sslcert is not None
            key = self.sslkey
            if self.sslpassword:
                _, key = _pem_files_for_tools(self.sslkey, self.sslpassword, pkcs12=False)
            env.update(PGSSLCERT=self.sslcert, PGSSLKEY=key)
        return env


# --- behind PgBouncer: the schema at the start of each transaction ---------------------


class _TransactionSettingSearchPath(Transaction):  # type: ignore[misc]
    """asyncpg's transaction, which sets the connection's schema (`SET LOCAL search_path`,
    one round trip) once its BEGIN has gone through; a savepoint is inside a transaction
    that did already."""

    def __init__(
        self,
        connection: _ConnectionSettingSearchPath,
        isolation: str | None,
        readonly: bool,
        deferrable: bool,
    ) -> None:
        super().__init__(connection, isolation, readonly, deferrable)
        self._search_path_connection = connection

    async def start(self) -> None:
        connection = self._search_path_connection
        outermost = not connection.is_in_transaction()
        await super().start()
        if outermost:
            try:
                await connection.execute(connection.search_path_statement)
            except BaseException:
                # Not left begun: whoever called start() takes it as not started.
                with contextlib.suppress(Exception):
                    await self.rollback()
                raise


class _ConnectionSettingSearchPath(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection behind PgBouncer for a schema other than the default
    (`DatabaseConfig.schema_per_transaction`). PgBouncer refuses `search_path` as a startup
    parameter, and in transaction mode a session's SET would stay on whichever server
    connection ran it, for other clients to inherit. So every transaction sets the schema
    for itself (`SET LOCAL`), and a statement run outside any transaction (a plain read on
    a pooled connection, core/sql.py) is run inside one of its own. The cost, a round trip
    a transaction and three a statement outside one, is for these connections only.

    `execute` without arguments (the simple protocol, as for CREATE DATABASE or VACUUM,
    which no transaction may hold) is sent as it is: such statements name their schema."""

    search_path_statement = ""  # set by `_connection_class_setting_search_path`

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> _TransactionSettingSearchPath:
        return _TransactionSettingSearchPath(self, isolation, readonly, deferrable)

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        if self.is_in_transaction():
            return await super().fetch(query, *args, **options)
        async with self.transaction():
            return await super().fetch(query, *args, **options)

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        if self.is_in_transaction():
            return await super().fetchrow(query, *args, **options)
        async with self.transaction():
            return await super().fetchrow(query, *args, **options)

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        if self.is_in_transaction():
            return await super().fetchval(query, *args, **options)
        async with self.transaction():
            return await super().fetchval(query, *args, **options)

    async def fetchmany(self, query: str, args: Any, **options: Any) -> Any:
        if self.is_in_transaction():
            return await super().fetchmany(query, args, **options)
        async with self.transaction():
            return await super().fetchmany(query, args, **options)

    async def execute(self, query: str, *args: Any, **options: Any) -> str:
        if not args or self.is_in_transaction():
            status: str = await super().execute(query, *args, **options)
            return status
        async with self.transaction():
            status = await super().execute(query, *args, **options)
            return status

    async def executemany(self, command: str, args: Any, **options: Any) -> None:
        if self.is_in_transaction():
            await super().executemany(command, args, **options)
            return
        async with self.transaction():
            await super().executemany(command, args, **options)


@cache
def _connection_class_setting_search_path(schema: str) -> type[_ConnectionSettingSearchPath]:
    """The connection class for `schema` (asyncpg makes the connection: it takes a class)."""
    statement = f"SET LOCAL search_path TO {quoted_identifier(schema)}"
    return type(
        "ConnectionSettingSearchPath",
        (_ConnectionSettingSearchPath,),
        {"search_path_statement": statement},
    )


def quoted_identifier(name: str) -> str:
    """`name` as an SQL identifier: double-quoted, inner quotes doubled, case kept."""
    return '"' + name.replace('"', '""') + '"'


# --- TLS files --------------------------------------------------------------------------


@contextlib.contextmanager
def _loading(what: str, *, password_hint: bool = False) -> Iterator[None]:
    """A file an SSL context cannot use is the URL's error: `what` names the parameter."""
    try:
        yield
    except (OSError, ssl.SSLError) as exc:
        hint = " (a wrong or missing sslpassword shows as this too)" if password_hint else ""
        raise ConfigurationError(f"DATABASE_URL {what}: {first_line(exc)}{hint}") from exc


def _openssl(parameter: str, path: str, password: str | None, *arguments: str) -> str:
    """What the `openssl` command writes for `arguments` about the file at `path`, read
    with `password` (passed in its environment, never on its command line)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigurationError(
            f"DATABASE_URL parameter {parameter}: reading {path} needs the openssl command, "
            "which is not installed; install OpenSSL, or give the client certificate and an "
            "unencrypted key as PEM files with sslcert and sslkey"
        )
    environment = {**os.environ, "COURSEHUB_TLS_PASSWORD": password or ""}
    errors: list[str] = []
    # OpenSSL 3 reads PKCS12 files made with old ciphers (RC2, as OpenSSL 1 and older Java
    # wrote them) only with its legacy provider.
    retries = [("-legacy",)] if arguments[0] == "pkcs12" else []
    for legacy in [(), *retries]:
        result = subprocess.run(  # noqa: S603 (openssl from PATH, our own arguments)
            [openssl, *arguments, *legacy, "-in", path, "-passin", "env:COURSEHUB_TLS_PASSWORD"],
            capture_output=True,
            text=True,
            env=environment,
            check=False,
        )
        if result.returncode == 0:
            return result.stdout
        errors.append(next((line for line in result.stderr.splitlines() if line.strip()), ""))
    raise ConfigurationError(
        f"DATABASE_URL parameter {parameter}: cannot read {path}: "
        f"{errors[0] or 'openssl failed'} (is sslpassword right?)"
    )


def _read_pkcs12(path: str, password: str | None) -> tuple[str, str]:
    """The client certificate (then any CA certificates of its chain) and the decrypted key
    in a PKCS12 file, as PEM text."""
    key = _openssl("sslidentity", path, password, "pkcs12", "-nocerts", "-nodes")
    certificate = _openssl("sslidentity", path, password, "pkcs12", "-nokeys", "-clcerts")
    chain = _openssl("sslidentity", path, password, "pkcs12", "-nokeys", "-cacerts")
    if "PRIVATE KEY-----" not in key or "CERTIFICATE-----" not in certificate:
        raise ConfigurationError(
            f"DATABASE_URL parameter sslidentity: {path} holds no client certificate with its key"
        )
    return certificate + chain, key


@cache
def _private_directory() -> Path:
    """A directory only this user can read, removed when the process ends."""
    directory = Path(tempfile.mkdtemp(prefix="coursehub-tls-"))  # mode 700
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def _write_private(text: str, name: str) -> str:
    path = _private_directory() / f"{uuid4().hex}-{name}"
    # Created 600: a key must never be readable by others, even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return str(path)


@contextlib.contextmanager
def _private_files(certificate: str, key: str) -> Iterator[tuple[str, str]]:
    """The certificate and key as PEM files for as long as the block runs (the driver's
    SSL context reads them once, when it is made)."""
    paths = (_write_private(certificate, "client.crt"), _write_private(key, "client.key"))
    try:
        yield paths
    finally:
        for path in paths:
            Path(path).unlink(missing_ok=True)


@cache
def _pem_files_for_tools(path: str, password: str | None, *, pkcs12: bool) -> tuple[str, str]:
    """PEM files of the client certificate and decrypted key the client tools can read:
    from a PKCS12 file, or (for `pkcs12=False`) a decrypted copy of the PEM key at `path`,
    whose certificate file is then unused. Made once a process, kept until it ends."""
    if pkcs12:
        certificate, key = _read_pkcs12(path, password)
    else:
        certificate, key = "", _openssl("sslkey", path, password, "pkey")
    return _write_private(certificate, "client.crt"), _write_private(key, "client.key")


def _system_ca_file() -> str:
    """The system's trusted CAs, as a file libpq can read (PostgreSQL 16's libpq also
    understands "system"; older ones need the file)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    return SYSTEM_CAS


# --- parsing ----------------------------------------------------------------------------


def _authority_host(netloc: str) -> str:
    """The host of the URL's authority, percent-decoded, its case kept (urlsplit's
    `hostname` lower-cases it up to a `%`, which a percent-decoded name may then differ
    by), without the brackets round an IPv6 address."""
    host = netloc.rpartition("@")[2]
    bracketed = host.startswith("[")
    return unquote(host[1:].partition("]")[0] if bracketed else host.partition(":")[0])


# What splits the server's command-line options: C's isspace (PostgreSQL's `pg_split_opts`).
_OPTION_SPACE = frozenset(" \t\n\v\f\r")


def _escaped_option(text: str) -> str:
    """`text` as one word of the server's command-line options (`pg_split_opts`): white
    space and backslashes escaped with a backslash."""
    return "".join(
        "\\" + character if character in _OPTION_SPACE or character == "\\" else character
        for character in text
    )


def _option_words(raw: str) -> list[str]:
    """`options` split as the server splits it (`pg_split_opts`): at unescaped white space,
    a backslash escaping the character after it."""
    words: list[str] = []
    word: list[str] | None = None
    escaped = False
    for character in raw:
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
            word = word if word is not None else []
            continue
        elif character in _OPTION_SPACE:
            if word is not None:
                words.append("".join(word))
                word = None
            continue
        word = word if word is not None else []
        word.append(character)
    if word is not None:
        words.append("".join(word))
    return words


def _server_options(raw: str) -> tuple[tuple[str, str], ...]:
    """The server settings of Prisma's (and libpq's) `options`: `-c name=value`,
    `-cname=value` or `--name=value` (a `-` in the name read as `_`, as the server does).
    The server's other command-line switches are refused, as are settings CourseHub makes
    itself. A setting given twice keeps its last value, as on the server."""
    words = _option_words(raw)
    settings: dict[str, tuple[str, str]] = {}
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "-c":
            setting = words[index] if index < len(words) else ""
            index += 1
        elif word.startswith("-c") or (word.startswith("--") and word != "--"):
            setting = word[2:]  # -cname=value, --name=value
        else:
            raise ConfigurationError(
                f"DATABASE_URL parameter options: {word!r} is not a server setting; only "
                "settings can be given, as -c name=value (or --name=value)"
            )
        name, equals, value = setting.partition("=")
        if not equals or not name:
            raise ConfigurationError(
                f"DATABASE_URL parameter options: {setting!r} needs a name and a value, "
                "as -c name=value"
            )
        name = name.replace("-", "_")
        reason = _SETTINGS_OF_OUR_OWN.get(name.lower())
        if reason:
            raise ConfigurationError(
                f"DATABASE_URL parameter options sets {name}, which CourseHub sets itself: {reason}"
            )
        settings.pop(name.lower(), None)
        settings[name.lower()] = (name, value)
    return tuple(settings.values())


def _channel_binding(raw: str) -> str:
    if raw not in CHANNEL_BINDING_MODES:
        raise ConfigurationError(
            f"DATABASE_URL parameter channel_binding={raw!r} must be one of "
            + ", ".join(CHANNEL_BINDING_MODES)
        )
    if raw == "require":
        # Going on without the binding would silently drop the protection asked for.
        raise ConfigurationError(
            "DATABASE_URL parameter channel_binding=require cannot be honoured: CourseHub's "
            "driver (asyncpg) cannot bind its SCRAM login to TLS (SCRAM-SHA-256-PLUS); to "
            "make sure of the server, have its certificate verified instead (sslmode="
            "verify-full, and sslrootcert=system for a certificate from a public CA) and "
            "drop channel_binding or set it to prefer"
        )
    return raw


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


def _seconds(name: str, raw: str, *, zero_is_no_limit: bool) -> float:
    """A number of seconds; 0 is refused unless it means no limit."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"DATABASE_URL parameter {name}={raw!r} is not a number of seconds"
        ) from None
    if not math.isfinite(value) or not 0 <= value <= LARGEST_NUMBER:
        raise ConfigurationError(
            f"DATABASE_URL parameter {name}={raw!r} must be from 0 to {LARGEST_NUMBER} seconds"
        )
    if value == 0 and not zero_is_no_limit:
        raise ConfigurationError(
            f"DATABASE_URL parameter {name}=0 would end every statement at once; "
            f"leave {name} out for no limit"
        )
    return value


def _whole_number(name: str, raw: str, *, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"DATABASE_URL parameter {name}={raw!r} is not a whole number"
        ) from None
    if not minimum <= value <= LARGEST_NUMBER:
        raise ConfigurationError(
            f"DATABASE_URL parameter {name} must be from {minimum} to {LARGEST_NUMBER}"
        )
    return value


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigurationError(f"DATABASE_URL parameter {name}={raw!r} must be true or false")


def _existing_file(name: str, raw: str) -> str:
    if name == "sslrootcert" and raw == SYSTEM_CAS:
        return raw
    path = os.path.abspath(raw)
    if not os.path.isfile(path):
        where = ""
        if not os.path.isabs(raw):
            where = (
                " (a relative path is taken from the current directory, "
                "not from Prisma's ./prisma directory)"
            )
        raise ConfigurationError(f"DATABASE_URL parameter {name}: no such file {path}{where}")
    return path


def _check_tls(params: dict[str, str]) -> None:
    """Refuse TLS parameters that contradict each other (module docstring: their meanings)."""
    if params.get("sslkey") and not params.get("sslcert"):
        raise ConfigurationError(
            "DATABASE_URL parameter sslkey needs sslcert, the client certificate it is the key of"
        )
    if params.get("sslidentity") and params.get("sslkey"):
        raise ConfigurationError(
            "DATABASE_URL parameters sslidentity and sslkey both give a client certificate: "
            "give either sslidentity (a PKCS12 file, as Prisma) or sslcert and sslkey "
            "(PEM files, as libpq)"
        )
    if params.get("sslcert") and params.get("sslrootcert") and not params.get("sslkey"):
        raise ConfigurationError(
            "DATABASE_URL parameters sslcert and sslrootcert both give the CA certificate "
            "(without sslkey, sslcert is Prisma's: the server's CA); give one of them, or "
            "add sslkey if sslcert is your client certificate"
        )
    accept = params.get("sslaccept")
    if accept is not None and accept not in SSL_ACCEPT_MODES:
        raise ConfigurationError(
            f"DATABASE_URL parameter sslaccept={accept!r} must be one of "
            + ", ".join(SSL_ACCEPT_MODES)
        )
    mode = params.get("sslmode")
    if (
        accept
        and mode in ("verify-ca", "verify-full")
        and (accept, mode) != ("strict", "verify-full")
    ):
        raise ConfigurationError(
            f"DATABASE_URL parameters sslaccept={accept} and sslmode={mode} disagree on "
            "verifying the server's certificate; sslaccept belongs with Prisma's sslmode "
            "(prefer or require): drop one of them"
        )


def parse_database_url(url: str) -> DatabaseConfig:
    """Parse a `postgresql://user:password@host:port/db?params` URL the way Prisma does."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # "Invalid IPv6 URL": a bracket left open
        raise ConfigurationError(f"DATABASE_URL is not a valid URL: {exc}") from None
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
    host = params.get("host") or _authority_host(parts.netloc) or "localhost"
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
        changes["pool_size"] = _whole_number(
            "connection_limit", params["connection_limit"], minimum=1
        )
    # Prisma: 0 is no limit for pool_timeout and connect_timeout. A socket_timeout of 0
    # would time every statement out at once (in Prisma too): refused.
    for name, zero_is_no_limit in (
        ("pool_timeout", True),
        ("connect_timeout", True),
        ("socket_timeout", False),
        ("max_connection_lifetime", True),
        ("max_idle_connection_lifetime", True),
    ):
        if name in params:
            changes[name] = _seconds(name, params[name], zero_is_no_limit=zero_is_no_limit)
    if "statement_cache_size" in params:
        # 0: no cache, as in Prisma and asyncpg.
        changes["statement_cache_size"] = _whole_number(
            "statement_cache_size", params["statement_cache_size"], minimum=0
        )
    if "sslmode" in params:
        if params["sslmode"] not in SSL_MODES:
            raise ConfigurationError(
                f"DATABASE_URL parameter sslmode={params['sslmode']!r} must be one of "
                + ", ".join(SSL_MODES)
            )
        changes["sslmode"] = params["sslmode"]
    if "pgbouncer" in params:
        changes["pgbouncer"] = _boolean("pgbouncer", params["pgbouncer"])
    # An empty value is as if the parameter were not there (as before, and as libpq).
    given = {key: value for key, value in params.items() if value != ""}
    _check_tls(given)
    for name in _FILE_PARAMETERS:
        if name in given:
            changes[name] = _existing_file(name, given[name])
    for name in ("sslpassword", "sslaccept", "application_name"):
        if name in given:
            changes[name] = given[name]
    if "channel_binding" in given:
        changes["channel_binding"] = _channel_binding(given["channel_binding"])
    if "options" in given:
        changes["options"] = _server_options(given["options"])
    return replace(config, **changes)
