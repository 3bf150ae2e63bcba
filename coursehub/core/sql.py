"""Hot statements run on the request's own asyncpg connection, compiled once.

A statement run through `session.execute` costs ~250 µs of SQLAlchemy (execution
context, result objects, the greenlet bridge) before asyncpg does anything; the same
statement on the driver costs ~50 µs (docs/BENCHMARKS.md). `DriverStatement` keeps
the statement written with SQLAlchemy Core in its repository, compiles it once for
the asyncpg dialect, and runs it on the session's connection
(`AsyncSession.connection()` → `AsyncConnection.get_raw_connection()` →
`driver_connection`, all public), so it is still the request's connection and the
request's unit of work. Routes that only read and need no session run their reads
(`fetch`, `fetchrow`) on a pooled connection of their own instead
(`Database.read_connection`, core/database.py): the same statements, no session.

What it is for, and what not:

- **Reads** (`fetch`, `fetchrow`). SQLAlchemy's asyncpg adapter sends BEGIN lazily,
  before the first statement *it* runs; a read sent on the driver before that runs
  on its own (PostgreSQL's implicit one-statement transaction, read committed as the
  store's transactions are). A read-only request then costs one round trip instead
  of three (BEGIN, SELECT, COMMIT): the session's commit has nothing to send. (Not
  behind PgBouncer with a schema other than the default: there each such read runs in
  a transaction of its own that sets the schema first, core/dburl.py.) Once the
  session has begun a transaction (a write earlier in the request, or a test's outer
  transaction), the read runs inside it, on the same connection, and sees its writes.
- **Writes, locks, and reads that must be in the transaction** (`fetch_in_transaction`):
  on the driver only once the connection is inside the session's transaction, which
  asyncpg reports publicly (`Connection.is_in_transaction()`); before that, through
  SQLAlchemy (`AsyncConnection.exec_driver_sql`), which begins it. Never a write or
  a lock outside the unit of work.
- **Write transactions without a session** (`Database.write_transaction`): the routes
  whose speed the benchmark holds to the floor (checkout, sign-up, the admins' role
  changes and account deletions) run their unit of work as asyncpg's own
  `Connection.transaction()` on a connection of SQLAlchemy's pool: the same statements,
  run with `fetch_in_transaction` on that connection, which refuses to run outside its
  transaction. A session's cost (~115 µs) and the first
  statement's trip through SQLAlchemy (~300 µs of CPU, docs/BENCHMARKS.md) are gone.
  Repository functions take a `Writer` (either unit of work) and build their objects
  with `as_loaded`, so the session's callers (CLI, admin routes, tests) and the
  driver's share one implementation.

asyncpg's integrity errors (unique, foreign key, check) are raised as SQLAlchemy's
`IntegrityError` with asyncpg's error as `orig`, as through the session; its other
errors are left as they are (core/problems.py knows them). A failed statement aborts
the transaction it ran in, as through the session: the request then rolls back.

Values are handed to asyncpg after the bind processors of their columns' types (so
aware datetimes become naive UTC, as `UTCDateTime` stores them). Rows come back as
asyncpg Records with the driver's types: the caller maps them, attaching UTC to
timestamps (`aware`). The ORM's identity map knows nothing of these rows by itself:
objects are made from them with `as_loaded` / `as_refreshed` (which find the session's
own object of that identity) or `loaded_object`; a write through here to a row whose
object a session holds must update or drop that object too (users/repository.py
`update_user_role`, `_forget`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from inspect import get_annotations
from operator import itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar
from weakref import WeakKeyDictionary

import asyncpg
from asyncpg import Record
from sqlalchemy import ColumnElement, event, func, inspect, literal_column
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import ClauseElement

T = TypeVar("T")


class WriteTransaction:
    """The unit of work of the routes that write without a session: asyncpg's own
    transaction on a connection of SQLAlchemy's pool (`Database.write_transaction`),
    begun by its first statement, as a session begins its transaction.

    Until then it holds nothing: a request refused before it reaches the database (a body
    that fails validation, a bad token) or one that first does slow work of its own
    (sign-up hashes the password, ~100 ms of argon2) holds neither a pooled connection
    nor an open transaction meanwhile. `async with` ends it: committed when the block
    ends, rolled back if it raises, and its connection returned; a transaction that never
    began has nothing to end. Statements reach it through `DriverStatement`, which asks
    for `connection()`. One request, one task: it is not shared between tasks."""

    __slots__ = ("_begin", "_connection", "_context")

    def __init__(self, begin: AbstractAsyncContextManager[asyncpg.Connection]):
        # `begin`, entered at the first statement, is the real thing: a pooled connection
        # inside `transaction()` (a savepoint of the test's transaction in the tests).
        self._begin: AbstractAsyncContextManager[asyncpg.Connection] | None = begin
        self._context: AbstractAsyncContextManager[asyncpg.Connection] | None = None
        self._connection: asyncpg.Connection | None = None

    @property
    def begun(self) -> bool:
        return self._connection is not None

    async def connection(self) -> asyncpg.Connection:
        """The transaction's connection, checked out and BEGUN on the first call."""
        connection = self._connection
        if connection is None:
            context, self._begin = self._begin, None
            if context is None:
                raise RuntimeError("this write transaction has ended, or failed to begin")
            connection = await context.__aenter__()
            self._context, self._connection = context, connection
        return connection

    async def __aenter__(self) -> WriteTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        context, self._context, self._connection, self._begin = self._context, None, None, None
        if context is not None:
            await context.__aexit__(exc_type, exc, traceback)


# What a read runs on: the request's session (its connection, its transaction once begun),
# a pooled connection checked out for plain autocommit reads, or a write transaction.
Reader: TypeAlias = AsyncSession | asyncpg.Connection | WriteTransaction
# What a write runs in: the request's session, a write transaction, or the asyncpg
# connection of one (always inside its transaction).
Writer: TypeAlias = AsyncSession | WriteTransaction | asyncpg.Connection
# The engine each pooled driver connection belongs to (see `remember_driver_connections`).
_ENGINES: WeakKeyDictionary[asyncpg.Connection, Engine] = WeakKeyDictionary()
# A dialect of its own, not the engine's: statements are compiled at import, before any
# engine exists. Nothing these statements render depends on the server's version.
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_REQUIRED = object()


class DriverStatement:
    """A Core statement compiled once (asyncpg's `$n` parameters), run on the request's
    asyncpg connection. Parameters are passed by their bind names."""

    __slots__ = ("_defaults", "_names", "_processors", "_record_class", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        # The class asyncpg makes each row of (`ViewStatement`); None: asyncpg's Record.
        self._record_class: type[Record] | None = None
        compiled = statement.compile(dialect=_DIALECT)
        names: Sequence[str] = compiled.positiontup or ()  # type: ignore[attr-defined]
        if any(bind.expanding for bind in compiled.binds.values()):  # type: ignore[attr-defined]
            raise ValueError("expanding (IN) parameters are not supported: use = ANY(:array)")
        self.sql: str = compiled.string
        self._names = tuple(names)
        processors: list[Callable[[Any], Any] | None] = []
        defaults: list[Any] = []
        values = compiled.params
        for name in self._names:
            bind = compiled.binds[name]  # type: ignore[attr-defined]
            # The dialect's implementation of the type: the generic one's processors are
            # not asyncpg's (generic Numeric would turn Decimals into floats).
            processor = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            processors.append(processor)
            if bind.required or bind.callable is not None:
                defaults.append(_REQUIRED)
            else:
                value = values[name]
                defaults.append(processor(value) if processor is not None else value)
        self._processors = tuple(processors)
        self._defaults = tuple(defaults)

    def arguments(self, parameters: dict[str, Any]) -> list[Any]:
        """The positional arguments for the `$n` parameters, bind-processed."""
        arguments: list[Any] = []
        for name, default, processor in zip(
            self._names, self._defaults, self._processors, strict=True
        ):
            if name in parameters:
                value = parameters[name]
                arguments.append(processor(value) if processor is not None else value)
            elif default is _REQUIRED:
                raise KeyError(f"missing value for the bound parameter {name!r}")
            else:
                arguments.append(default)
        return arguments

    # `fetch` and `fetch_in_transaction` are plain functions returning the driver's
    # coroutine when the connection is at hand (a read connection, a write transaction
    # already begun): a coroutine of their own around it would cost every statement a
    # frame more to make and to pass the reply back through (docs/BENCHMARKS.md).

    def fetch(self, reader: Reader, **parameters: Any) -> Awaitable[list[Record]]:
        """The rows of a read, on the driver (see the module's docstring): on the session's
        connection, or on a pooled connection checked out for reads (`Database.read_connection`),
        or in a write transaction (beginning it)."""
        if isinstance(reader, WriteTransaction) and reader._connection is not None:
            reader = reader._connection
        if isinstance(reader, asyncpg.Connection):
            # No SQLAlchemy connection here: the listeners are the engine's that made it.
            return self._on_driver(None, _dispatch(reader), reader, self.arguments(parameters))
        return self._fetch_beginning(reader, parameters)

    async def _fetch_beginning(
        self, reader: AsyncSession | WriteTransaction, parameters: dict[str, Any]
    ) -> list[Record]:
        """`fetch` where the connection must be asked for first (and may be opened)."""
        if isinstance(reader, WriteTransaction):
            return await self.fetch(await reader.connection(), **parameters)
        connection = await reader.connection()
        sync_connection = connection.sync_connection
        assert sync_connection is not None
        # `Connection.connection` is the pooled connection the session already holds;
        # `get_raw_connection()` would cross into a greenlet only to read it. An
        # invalidated connection must be re-established: that needs the async path.
        driver: asyncpg.Connection
        if sync_connection.invalidated:
            driver = (await connection.get_raw_connection()).driver_connection
        else:
            driver = sync_connection.connection.driver_connection
        return await self._on_driver(
            sync_connection, sync_connection.dispatch, driver, self.arguments(parameters)
        )

    async def fetchrow(self, reader: Reader, **parameters: Any) -> Record | None:
        rows = await self.fetch(reader, **parameters)
        return rows[0] if rows else None

    def fetch_in_transaction(
        self, writer: Writer, **parameters: Any
    ) -> Awaitable[Sequence[Record | Row[*tuple[Any, ...]]]]:
        """Run the statement inside the unit of work's transaction, whatever it does (a
        write, a lock, a read that must see the transaction's writes), and return its rows.

        On a write transaction's connection: on the driver, and refused (RuntimeError, a
        bug) if the connection is not inside a transaction, where a write would commit on
        its own. On a session: on the driver when the connection is already inside a
        transaction (asyncpg's public `is_in_transaction()`: SQLAlchemy has begun the
        session's); otherwise through SQLAlchemy (`exec_driver_sql`, the same SQL and
        arguments), which begins the session's transaction first, exactly as
        `session.execute` would. In a write transaction not yet begun, the statement begins
        it. Rows are indexable by position either way."""
        if isinstance(writer, WriteTransaction) and writer._connection is not None:
            writer = writer._connection
        if isinstance(writer, asyncpg.Connection):
            if not writer.is_in_transaction():
                raise RuntimeError("a write on a connection outside its transaction")
            return self._on_driver(None, _dispatch(writer), writer, self.arguments(parameters))
        return self._fetch_in_transaction_beginning(writer, parameters)

    async def _fetch_in_transaction_beginning(
        self, writer: AsyncSession | WriteTransaction, parameters: dict[str, Any]
    ) -> Sequence[Record | Row[*tuple[Any, ...]]]:
        """`fetch_in_transaction` where the connection must be asked for first: a write
        transaction's first statement (which begins it), or any on a session."""
        if isinstance(writer, WriteTransaction):
            return await self.fetch_in_transaction(await writer.connection(), **parameters)
        connection = await writer.connection()
        arguments = self.arguments(parameters)
        sync_connection = connection.sync_connection
        assert sync_connection is not None
        if not sync_connection.invalidated:
            driver: asyncpg.Connection = sync_connection.connection.driver_connection
            if driver.is_in_transaction():
                return await self._on_driver(
                    sync_connection, sync_connection.dispatch, driver, arguments
                )
        result = await connection.exec_driver_sql(self.sql, tuple(arguments))
        return result.all() if result.returns_rows else []

    async def _on_driver(
        self,
        sync_connection: Connection | None,
        dispatch: Any,
        driver: asyncpg.Connection,
        arguments: list[Any],
    ) -> list[Record]:
        # Statement listeners on the engine (logging, timing, the tests' query counts) see
        # these statements as they see the session's own: the same SQL and positional
        # parameters (no cursor and no execution context: there are none; and no
        # SQLAlchemy connection either for a read connection's statement).
        if dispatch is not None and dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(
                sync_connection, None, self.sql, tuple(arguments), None, False
            )
        try:
            rows: list[Record] = await driver.fetch(
                self.sql, *arguments, record_class=self._record_class
            )
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(self.sql, arguments, exc) from exc
        except asyncpg.InterfaceError as exc:
            # On a connection asyncpg has seen the server close (a restart mid-request),
            # its complaint is about the connection, not the statement: raised as the loss
            # it is, which the API answers with 503 (asyncpg's own InterfaceError also
            # means misuse, a bug: a 500).
            if driver.is_closed():
                raise asyncpg.ConnectionDoesNotExistError(
                    "the server closed the connection"
                ) from exc
            raise
        if dispatch is not None and dispatch.after_cursor_execute:
            dispatch.after_cursor_execute(
                sync_connection, None, self.sql, tuple(arguments), None, False
            )
        return rows


class RowView(Record):  # type: ignore[misc]  # asyncpg is untyped here (pyproject.toml)
    """A row read on the driver, as asyncpg builds it (in C: no Python runs per row), whose
    columns also read as attributes: a subclass names and types them by its annotations
    (read-only at run time, which mypy does not know: assigning one raises AttributeError),
    in the order of its statement's columns, and each becomes a property reading that
    column by position (`operator.itemgetter`, C too). For the lists and pages the public
    reads serve, where making a dataclass of every row was a sixth of a catalogue page's
    CPU (docs/BENCHMARKS.md); the API's schemas read them `from_attributes` as they read a
    dataclass. Only `ViewStatement` makes them, and checks its
    columns against the annotations once, when the statement is built.

    A subclass may define further properties and methods (not annotated: they are no
    columns); asyncpg refuses subclasses that define `__new__` or `__init__`."""

    __slots__ = ()
    columns: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.columns:
            raise TypeError(f"{cls.__name__}: a row view's columns are its own class's")
        names = tuple(get_annotations(cls))
        for index, name in enumerate(names):
            setattr(cls, name, property(itemgetter(index)))
        cls.columns = names


V = TypeVar("V", bound=RowView)


class ViewStatement(DriverStatement, Generic[V]):
    """A `DriverStatement` (a SELECT) whose rows are `view`'s: their columns read as
    attributes. The statement's columns must be the view's, in its order (by their keys:
    an ORM attribute's name, or a label); anything else is a ValueError at import."""

    __slots__ = ()

    def __init__(self, statement: ClauseElement, view: type[V]) -> None:
        super().__init__(statement)
        keys = tuple(getattr(statement, "selected_columns").keys())  # noqa: B009
        if keys != view.columns:
            raise ValueError(f"the statement's columns {keys} are not {view.__name__}'s")
        self._record_class = view

    if TYPE_CHECKING:
        # DriverStatement's own methods, typed with the view: no coroutine of this class's
        # around them, which the statement's reply would pass through on its way back.

        def fetch(self, reader: Reader, **parameters: Any) -> Awaitable[list[V]]: ...

        async def fetchrow(self, reader: Reader, **parameters: Any) -> V | None: ...


def _dispatch(connection: asyncpg.Connection) -> Any:
    """The statement listeners of the engine that made this pooled driver connection (None
    for a connection of no engine's)."""
    engine = _ENGINES.get(connection)
    return engine.dispatch if engine is not None else None


def remember_driver_connections(engine: AsyncEngine) -> None:
    """Note the engine of each connection it makes, so a statement run on a bare driver
    connection (`Database.read_connection`) reaches the engine's statement listeners."""

    def remember(dbapi_connection: Any, record: Any) -> None:
        _ENGINES[dbapi_connection.driver_connection] = engine.sync_engine

    event.listen(engine.sync_engine, "connect", remember)


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session's (the request's) connection."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


def _integrity_error(
    sql: str, arguments: Sequence[Any], exc: asyncpg.IntegrityConstraintViolationError
) -> IntegrityError:
    """The exception SQLAlchemy raises for the same failure, so callers catch one type
    (`exc.orig` is asyncpg's error: it names the constraint)."""
    return IntegrityError(sql, tuple(arguments), exc)


def as_loaded(owner: Reader, model: type[T], **values: Any) -> T:
    """An ORM object made from a row read here, as an ORM query would have given it.

    Read on a bare connection (a read connection, a write transaction's): a new object
    with the row's values, belonging to no session (nothing about it is ever saved by
    itself; its relationships can be set with `set_committed_value`). Read through a
    session: the session's own object of that identity (`values["id"]`) if it holds one, as
    the query would return it (not overwritten), with any of these attributes it has
    unloaded (expired by a rollback or commit) filled in from the row, as the ORM's
    loader does. Otherwise a new object with the row's values, given its identity as
    if loaded and added to the session: persistent and unchanged (never an INSERT), so
    changes made to it later are flushed as UPDATEs, as for a loaded object. Attributes
    not in `values` stay unloaded (as with `load_only`)."""
    return _from_row(owner, model, values, refresh=False)


def as_refreshed(owner: Reader, model: type[T], **values: Any) -> T:
    """`as_loaded`, except that an object the session already holds gets every one of
    these attributes from the row, loaded or not (the ORM's `populate_existing`): for
    reads that must show the row as it is now, after writes made beside the session."""
    return _from_row(owner, model, values, refresh=True)


def _from_row(owner: Reader, model: type[T], values: dict[str, Any], *, refresh: bool) -> T:
    if not isinstance(owner, AsyncSession):
        return loaded_object(model, **values)
    session = owner
    existing = session.identity_map.get(identity_key(model, values["id"]))
    if existing is not None:
        unloaded = inspect(existing).unloaded
        for name, value in values.items():
            if refresh or name in unloaded:
                set_committed_value(existing, name, value)
        held: T = existing
        return held
    obj = loaded_object(model, **values)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def loaded_object(model: type[T], **values: Any) -> T:
    """A new ORM object holding `values` (attribute names) as if loaded from its row:
    committed, with no change history, made as the ORM's loader makes a query's objects
    (the class manager's `new_instance`, the values put in the instance's dict) instead of
    through the mapped constructor, whose per-attribute events cost ~16 µs an object
    against ~1 µs (a sign-up makes one or two on every request). Transient (no session, no
    identity) until attached (`attach_written`, `as_loaded`); changes made to it later are
    tracked as usual. Unlike the constructor it does not check the names: callers pass
    columns' attributes and, for a new row, its relationships as loaded (an object, None,
    or a list), as `users/repository.py` `_new_user` does; set a relationship of an object
    already attached with `set_committed_value`."""
    manager = _CLASS_MANAGERS.get(model)
    if manager is None:
        # The mapped constructor and ORM queries configure the mappers (relationships,
        # attribute instrumentation) before their first use; `new_instance` does not. A
        # process whose first ORM work is this (a CLI command, a fresh worker's first
        # sign-up) would otherwise make objects whose attributes cannot be read.
        configure_mappers()
        manager = _CLASS_MANAGERS[model] = inspect(model).class_manager
    obj: T = manager.new_instance()
    instance_dict(obj).update(values)
    return obj


# Each mapped class's ORM class manager, looked up once (`inspect` costs ~1 µs a call).
_CLASS_MANAGERS: dict[type, Any] = {}


def attach_written(writer: Writer, *objects: Any) -> None:
    """Objects whose rows were just written by Core: in a session, made its persistent
    objects, as if read back (so later changes to them are flushed as UPDATEs). In a write
    transaction there is no session: they stay the caller's plain objects."""
    if not isinstance(writer, AsyncSession):
        return
    for obj in objects:
        make_transient_to_detached(obj)
        writer.add(obj)


def in_utc(column: InstrumentedAttribute[datetime]) -> ColumnElement[datetime]:
    """A timestamp column (without time zone, holding UTC) as timestamptz, labelled with the
    attribute's name: asyncpg reads it as an aware datetime in UTC whatever the session's
    TimeZone, with no conversion in Python (`aware`) afterwards."""
    return func.timezone(literal_column("'UTC'"), column).label(column.key)


def aware(value: datetime) -> datetime:
    """A timestamp read from the database (naive, holding UTC) as aware UTC."""
    return value.replace(tzinfo=UTC)
