"""Engines, sessions and the request's unit of work.

Only the request's unit of work commits (and rolls back on error): its session
dependency, or for the few routes that write without a session, its write
transaction dependency (`Database.write_transaction`, core/sql.py says why).
Services and repositories `flush()` at most. CLI commands open their own
(`command_transaction`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from weakref import WeakSet

import asyncpg
from asyncpg.transaction import Transaction
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from coursehub.core.dburl import DatabaseConfig, parse_database_url, quoted_identifier
from coursehub.core.errors import ConfigurationError, first_line
from coursehub.core.settings import Settings
from coursehub.core.sql import WriteTransaction, remember_driver_connections

# Errors after which a connection cannot be trusted again: lost (the server ended it,
# the socket failed), its protocol out of step (an unsolicited message from a server
# shutting down), or left mid-statement by a cancelled request.
BROKEN_CONNECTION = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.CancelledError,
)


class _MustConnect(Exception):
    """Raised by the engine's `do_connect` listener into a direct checkout (`check_out`)
    that would have to open a connection: that awaits, and only a greenlet can."""

    def __init__(self) -> None:
        super().__init__("a connection must be opened; checking out through a greenlet")


class _DirectCheckout(threading.local):
    """Whether this thread is inside `check_out`'s direct checkout; read by the engine's
    `do_connect` listener. A thread's flag rather than a context variable: tasks and
    callbacks created during the checkout (a terminated connection's listeners) copy the
    context, and would carry a context variable's True into their own connects later;
    they read this flag when they run, after it is reset."""

    active = False


_DIRECT_CHECKOUT = _DirectCheckout()
# The engines `create_engine` made: the do_connect listener installed, no pool_pre_ping
# and no checkout listener that awaits (they read asyncpg's state and the clock). Others
# are checked out the usual way only.
_DIRECT_CHECKOUT_ENGINES: WeakSet[Engine] = WeakSet()


def _refuse_to_connect_directly(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
    if _DIRECT_CHECKOUT.active:
        raise _MustConnect


def _replace_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout listener: a connection the server ended while it sat idle in the pool
    (a restart, a failover, an admin's pg_terminate_backend) and asyncpg has seen close is
    replaced before the request gets it. Without this the request's first statement failed
    (`InterfaceError: connection is closed`, a 500 on the driver's paths) once for each
    such connection. `DisconnectionError` makes the pool discard it and open another, in
    the same checkout (in a direct checkout, `_MustConnect` hands that to a greenlet). No
    I/O: asyncpg's `is_closed()` reads its own state, so the direct checkout stays
    possible."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server ended this connection while it was idle")


# In a pooled connection's `info` (emptied when it is re-opened): when it was returned.
_RETURNED_AT = "coursehub_returned_at"


def _note_return(dbapi_connection: Any, record: Any) -> None:
    """Pool checkin listener: when the connection went back, for `max_idle_connection_lifetime`."""
    record.info[_RETURNED_AT] = time.monotonic()


def _replace_long_idle_connection(limit: float) -> Callable[[Any, Any, Any], None]:
    """Pool checkout listener for DATABASE_URL's `max_idle_connection_lifetime` (Prisma's:
    a connection idle longer is not used again): such a connection is replaced before the
    request gets it, as `_replace_closed_connection` replaces one the server ended. That
    is what keeps a connection a firewall or PgBouncer dropped unannounced from failing a
    request. Checked at checkout only: an idle connection is not closed while it waits.
    No I/O (the clock), so the direct checkout stays possible."""

    def replace_long_idle_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is not None and time.monotonic() - returned_at > limit:
            raise DisconnectionError(f"idle longer than max_idle_connection_lifetime ({limit:g} s)")

    return replace_long_idle_connection


async def check_out(engine: AsyncEngine) -> PoolProxiedConnection:
    """A connection of the engine's pool, as `AsyncEngine.raw_connection()` gives it, for
    a fraction of its CPU when the pool holds an idle connection.

    `raw_connection()` runs the pool's checkout in a new greenlet (`greenlet_spawn`), in
    case it must await: to open or re-open a connection, or to wait for one to come back.
    Making and switching to that greenlet costs ~9 µs on its own, 15-20 µs a request at
    16 at once (docs/BENCHMARKS.md): more than the checkout itself, on every request.
    When the pool holds an idle connection, SQLAlchemy's queue hands it over without
    awaiting (`AsyncAdaptedQueue.get`, which `raw_connection()` calls the same way, so who
    gets a connection is unchanged), so the checkout is called directly.

    Should that connection need re-opening first (older than pool_recycle, or
    invalidated), the engine's `do_connect` listener stops the direct checkout before any
    connect is attempted; the pool's failed-checkout path puts the connection's slot back
    (`_checkin_failed`), and the checkout is made again the usual way, which opens it.
    (Putting the slot back wakes a waiting task, if any, which finds the slot retaken and
    queues again at the back: only when a recycle meets a saturated pool.) The old
    connection is closed without a goodbye (asyncpg's `terminate()`, as SQLAlchemy closes
    connections outside a greenlet). This holds while the checkout itself makes no other
    await: no `pool_pre_ping`, no pool listener doing I/O; so only engines made by
    `create_engine` are checked out directly (tests/core/test_pool_checkout.py)."""
    pool = engine.pool
    if (
        isinstance(pool, QueuePool)
        and pool.checkedin()
        and engine.sync_engine in _DIRECT_CHECKOUT_ENGINES
    ):
        _DIRECT_CHECKOUT.active = True
        try:
            return engine.sync_engine.raw_connection()
        except _MustConnect:
            pass  # the idle connection must be re-opened, which awaits: below
        finally:
            _DIRECT_CHECKOUT.active = False
    return await engine.raw_connection()


class PooledDriverConnection:
    """`async with`: the asyncpg connection of a connection checked out of the engine's
    pool (the same pool, size and limits as the sessions'); returned afterwards, or
    discarded if it broke meanwhile. Written as a class rather than with
    `asynccontextmanager`: it is entered once a request, and a generator-based manager
    (two of them nested, for a write transaction) cost ~10 µs of CPU a request more."""

    __slots__ = ("_engine", "_pooled")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pooled: PoolProxiedConnection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._pooled = pooled = await check_out(self._engine)
        connection: asyncpg.Connection = pooled.driver_connection
        return connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release(discard=isinstance(exc, BROKEN_CONNECTION), reason=exc)

    def _release(self, *, discard: bool, reason: BaseException | None) -> None:
        pooled, self._pooled = self._pooled, None
        assert pooled is not None, "released without being checked out"
        if discard:
            pooled.invalidate(reason)
        else:
            pooled.close()


class PooledTransaction(PooledDriverConnection):
    """`PooledDriverConnection` inside asyncpg's `Connection.transaction()`: begun on
    entering, committed on leaving, rolled back if the block raised.

    A connection whose BEGIN or ROLLBACK failed is discarded, whatever the error: asyncpg
    may still count it as inside a transaction, and the next unit of work on it would
    start a savepoint instead of a transaction. A connection lost during the block gets no
    ROLLBACK (the server ended the transaction with it): it is discarded and the block's
    own error is raised, which says the database went away (a 503), not asyncpg's
    complaint about rolling back on a closed connection. A failure at COMMIT (a deferred
    constraint, say) is raised; the connection goes back to the pool unless it broke."""

    __slots__ = ("_transaction",)

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._transaction: Transaction | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        connection = await super().__aenter__()
        try:
            # Said in the BEGIN (no round trip more): checkout's coupon claims count on a
            # snapshot taken after their lock, which READ COMMITTED gives whatever the
            # server's default (core/dburl.py `server_settings`).
            transaction = connection.transaction(isolation="read_committed")
            await transaction.start()
        except BaseException as failure:
            self._release(discard=True, reason=failure)
            raise
        self._transaction = transaction
        return connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        transaction, self._transaction = self._transaction, None
        assert transaction is not None, "exited without being entered"
        if exc is None:
            try:
                await transaction.commit()
            except BaseException as failure:
                self._release(discard=isinstance(failure, BROKEN_CONNECTION), reason=failure)
                raise
            self._release(discard=False, reason=None)
            return
        if isinstance(exc, BROKEN_CONNECTION):
            self._release(discard=True, reason=exc)
            return  # the block's error goes on
        try:
            await transaction.rollback()
        except BaseException as failure:
            # The block's error goes on (unless this is the task being cancelled, which
            # must reach whoever cancelled it); this connection is not to be reused.
            self._release(discard=True, reason=failure)
            if isinstance(failure, asyncio.CancelledError):
                raise
            return
        self._release(discard=False, reason=None)


@dataclass(frozen=True)
class ResolvedDatabase:
    config: DatabaseConfig
    embedded: bool

    def describe(self) -> str:
        where = "embedded PostgreSQL" if self.embedded else "DATABASE_URL"
        return f"{self.config.redacted()} ({where})"


def resolve_database(settings: Settings) -> ResolvedDatabase:
    """The database this process uses: DATABASE_URL, or the embedded server."""
    if settings.database_url:
        return ResolvedDatabase(parse_database_url(settings.database_url), embedded=False)
    from coursehub.core.embedded import start_embedded_server

    return ResolvedDatabase(start_embedded_server(Path(settings.home)), embedded=True)


def create_engine(config: DatabaseConfig, *, pool_size: int | None = None) -> AsyncEngine:
    size = pool_size or config.effective_pool_size
    engine = create_async_engine(
        config.sqlalchemy_url(),
        connect_args=config.sqlalchemy_connect_args(),
        pool_size=size,
        # connection_limit is a hard limit in Prisma too. No overflow is also what lets
        # `PooledDriverConnection` return connections outside a greenlet: the queue is never
        # full, so a returned connection is never closed (which would await) instead.
        max_overflow=0,
        pool_timeout=config.pool_timeout or None,
        # DATABASE_URL's `max_connection_lifetime` (30 minutes unless it says; 0: no limit).
        pool_recycle=config.max_connection_lifetime or -1,
        # Last in, first out: back-to-back requests reuse the connection returned last,
        # whose server process, caches and prepared statements are warm, instead of
        # cycling through every connection opened at the last peak (first in, first out:
        # measured 1.3× the latency of the same statements on one warm connection at one
        # request at a time, docs/BENCHMARKS.md). The price: the connections at the
        # bottom can sit idle up to pool_recycle. One the server ended meanwhile
        # (idle_session_timeout, a restart) is replaced at checkout
        # (`_replace_closed_connection`); one dropped without a word (PgBouncer's or a
        # NAT's idle timeout) is only found out by the request that uses it, which fails
        # (503) and discards it. Behind such a timeout, DATABASE_URL's
        # `max_idle_connection_lifetime` must be set shorter than it.
        pool_use_lifo=True,
        # No pool_pre_ping: `check_out` checks idle connections out without a greenlet,
        # and a ping would await inside the checkout (a round trip a request, too).
    )
    remember_driver_connections(engine)
    event.listen(engine.sync_engine, "do_connect", _refuse_to_connect_directly)
    event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
    if config.max_idle_connection_lifetime:
        event.listen(engine.sync_engine, "checkin", _note_return)
        event.listen(
            engine.sync_engine,
            "checkout",
            _replace_long_idle_connection(config.max_idle_connection_lifetime),
        )
    _DIRECT_CHECKOUT_ENGINES.add(engine.sync_engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def session_apart(session: AsyncSession) -> AsyncSession:
    """A session of its own over what `session` is bound to (the engine's pool; the test's
    connection in the tests), configured as the request's: for a read that must give its
    connection back at once (`async with`), before slow work that needs none (checking a
    password), while `session` takes one only at its first statement."""
    return AsyncSession(bind=session.bind, expire_on_commit=False, autoflush=False)


# What connecting can raise: the socket's errors, the server's refusals, and asyncpg's own
# (InterfaceError: the client refusing its configuration before connecting, such as
# sslmode=verify-full without a root certificate).
CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def connect_error_message(config: DatabaseConfig, exc: BaseException) -> str:
    """One line saying why the database could not be reached and how to fix it."""
    target = config.redacted()
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"cannot sign in to {target}: wrong user or password; fix DATABASE_URL"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (
            f"database {config.database!r} does not exist on {target}; "
            f"create it (createdb {config.database}) or fix DATABASE_URL"
        )
    if isinstance(exc, OSError | TimeoutError):
        if config.embedded:
            # Started moments ago by this command: stopped since (`coursehub db stop`, or
            # another process's), or crashed. DATABASE_URL is not the operator's to fix.
            return (
                f"the embedded PostgreSQL at {target} stopped answering "
                f"({exc.__class__.__name__}: {exc}): it was stopped or has crashed; run the "
                "command again to start it"
            )
        return (
            f"cannot reach PostgreSQL at {target}: {exc.__class__.__name__}: {exc}; "
            "is the server running, and are host and port in DATABASE_URL right?"
        )
    return f"cannot connect to {target}: {first_line(exc)}"


async def check_connection(config: DatabaseConfig) -> None:
    """Connect once, or raise ConfigurationError with a one-line reason."""
    try:
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    except CONNECT_ERRORS as exc:
        raise ConfigurationError(await connect_error_message(config, exc)) from exc
    await connection.close()


async def ensure_database_exists(config: DatabaseConfig) -> bool:
    """Create the database (and the URL's schema) if missing. True if the database was created.

    Connects to the server's `postgres` maintenance database to create it.
    """
    created = False
    try:
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    except asyncpg.InvalidCatalogNameError:
        maintenance = config.with_database("postgres")
        try:
            admin = await asyncpg.connect(**maintenance.asyncpg_connect_kwargs())
        except CONNECT_ERRORS as exc:
            raise ConfigurationError(await connect_error_message(maintenance, exc)) from exc
        try:
            await admin.execute(f"CREATE DATABASE {quoted_identifier(config.database)}")
            created = True
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # Made meanwhile by another process starting too (`db migrate` on several
            # hosts): the one that lost its race on the catalogue's unique index gets the
            # second error rather than the first.
            pass
        finally:
            await admin.close()
        connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    except CONNECT_ERRORS as exc:
        raise ConfigurationError(await connect_error_message(config, exc)) from exc
    try:
        if config.schema != "public":
            # IF NOT EXISTS is not safe against a concurrent creation: made meanwhile.
            with contextlib.suppress(asyncpg.UniqueViolationError):
                await connection.execute(
                    f"CREATE SCHEMA IF NOT EXISTS {quoted_identifier(config.schema)}"
                )
    finally:
        await connection.close()
    return created


async def drop_database(config: DatabaseConfig) -> None:
    admin = await asyncpg.connect(**config.with_database("postgres").asyncpg_connect_kwargs())
    try:
        await admin.execute(
            f"DROP DATABASE IF EXISTS {quoted_identifier(config.database)} WITH (FORCE)"
        )
    finally:
        await admin.close()


async def analyze_schema(config: DatabaseConfig) -> None:
    """ANALYZE every table of the store's schema, in one statement.

    For after writes in bulk (a restore, a bulk seed): autovacuum gets to new tables only
    a minute or more later, and until then the planner takes them for (nearly) empty;
    a server process keeps plans made so (its foreign-key checks, say), scanning tables
    as they grow (docs/BENCHMARKS.md measured ~40% more server CPU a checkout). PostgreSQL's
    documentation asks for it after a restore."""
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        tables = await connection.fetch(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1",
            config.schema,
        )
        if tables:
            await connection.execute("ANALYZE " + ", ".join(row[0] for row in tables))
    finally:
        await connection.close()


async def analyze_after_commit(config: DatabaseConfig) -> str | None:
    """`analyze_schema` after work that has already committed (a restore, a bulk seed): its
    failure must not read as the work's, which is done, so it is returned as a warning to
    show (None when it went well) instead of raised."""
    try:
        await analyze_schema(config)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return (
            f"the data is in, but refreshing the planner's statistics failed ({first_line(exc)}); "
            "run ANALYZE on the database"
        )
    return None


@asynccontextmanager
async def command_transaction(config: DatabaseConfig) -> AsyncIterator[AsyncSession]:
    """A CLI command's unit of work: a one-connection engine of its own and one session
    transaction, committed when the block ends and rolled back if it raises; the engine
    is disposed of afterwards either way."""
    database = Database(config, pool_size=1)
    try:
        async with database.transaction() as session:
            yield session
    finally:
        await database.dispose()


def violated_constraint(exc: IntegrityError, *, expected: Iterable[str] = ()) -> str | None:
    """The name of the constraint an IntegrityError broke, as asyncpg reports it
    (SQLAlchemy wraps the driver adapter's exception, which wraps asyncpg's); failing
    that, whichever of `expected` the message names."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(error, "constraint_name", None)
        if isinstance(name, str):
            return name
    message = str(exc.orig)
    return next((name for name in expected if name in message), None)


class Database:
    """The engine and session factory one process uses."""

    def __init__(self, config: DatabaseConfig, *, pool_size: int | None = None) -> None:
        self.config = config
        self.engine = create_engine(config, pool_size=pool_size)
        self.sessionmaker = create_sessionmaker(self.engine)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure means "not answering"
            return False
        return True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    def read_connection(self) -> PooledDriverConnection:
        """A pooled connection's asyncpg connection (`async with`), for plain reads: no
        session (~115 µs of CPU a request, more than the read itself, docs/BENCHMARKS.md)
        and no transaction (each statement is its own, one round trip; behind PgBouncer
        with a schema other than the default, a transaction setting it, core/dburl.py).
        The pool and its limits are the engine's, as for sessions. Returned to the pool
        afterwards; a connection that broke meanwhile is discarded instead."""
        return PooledDriverConnection(self.engine)

    def write_transaction(self) -> WriteTransaction:
        """A write transaction (`async with`): asyncpg's own `Connection.transaction()` on a
        pooled connection (read committed, as the sessions'), begun by its first
        statement; committed when the block ends, rolled back if it raises. The unit of
        work of the requests the benchmark holds to the floor (checkout, sign-up, the
        admins' role changes and account deletions): what a session would do for them,
        without its cost (core/sql.py). Statements run in it with `DriverStatement`."""
        return WriteTransaction(PooledTransaction(self.engine))

    async def dispose(self) -> None:
        await self.engine.dispose()
