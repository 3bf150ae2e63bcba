"""Hot statements run on the request's own asyncpg connection, compiled once.

A statement run through `session.execute` costs ~250 µs of SQLAlchemy (execution
context, result objects, the greenlet bridge) before asyncpg does anything; the same
statement on the driver costs ~50 µs (docs/BENCHMARKS.md). `DriverStatement` keeps
the statement written with SQLAlchemy Core in its repository, compiles it once for
the asyncpg dialect, and runs it on the session's connection
(`AsyncSession.connection()` → `AsyncConnection.get_raw_connection()` →
`driver_connection`, all public), so it is still the request's connection and the
request's unit of work.

What it is for, and what not:

- **Reads** (`fetch`, `fetchrow`). SQLAlchemy's asyncpg adapter sends BEGIN lazily,
  before the first statement *it* runs; a read sent on the driver before that runs
  on its own (PostgreSQL's implicit one-statement transaction, read committed as the
  store's transactions are). A read-only request then costs one round trip instead
  of three (BEGIN, SELECT, COMMIT): the session's commit has nothing to send. Once the
  session has begun a transaction (a write earlier in the request, or a test's outer
  transaction), the read runs inside it, on the same connection, and sees its writes.
- **Writes** (`execute_in_transaction`) only once the connection is already inside
  the session's transaction, which asyncpg reports publicly
  (`Connection.is_in_transaction()`); otherwise it raises, never writing outside the
  unit of work. Begin it with a write through `session.execute` first.

Values are handed to asyncpg after the bind processors of their columns' types (so
aware datetimes become naive UTC, as `UTCDateTime` stores them). Rows come back as
asyncpg Records with the driver's types: the caller maps them, attaching UTC to
timestamps (`aware`). The ORM's identity map knows nothing of these rows: use them
where no ORM object is needed, and do not write through here what the session holds
loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from asyncpg import Record
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_REQUIRED = object()


class DriverStatement:
    """A Core statement compiled once (asyncpg's `$n` parameters), run on the request's
    asyncpg connection. Parameters are passed by their bind names."""

    __slots__ = ("_defaults", "_names", "_processors", "sql")

    def __init__(self, statement: ClauseElement) -> None:
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
            processor = bind.type.bind_processor(_DIALECT)
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

    async def _prepare(
        self, session: AsyncSession, parameters: dict[str, Any]
    ) -> tuple[asyncpg.Connection, list[Any]]:
        connection = await session.connection()
        arguments = self.arguments(parameters)
        sync_connection = connection.sync_connection
        assert sync_connection is not None
        # Statement listeners on the engine (logging, the tests' query counts) see these
        # statements as they see the session's own: same SQL, same positional parameters.
        announce = sync_connection.dispatch.before_cursor_execute
        if announce:
            announce(sync_connection, None, self.sql, tuple(arguments), None, False)
        # `Connection.connection` is the pooled connection the session already holds;
        # `get_raw_connection()` would cross into a greenlet only to read it. An
        # invalidated connection must be re-established: that needs the async path.
        if sync_connection.invalidated:
            raw = await connection.get_raw_connection()
        else:
            raw = sync_connection.connection
        driver: asyncpg.Connection = raw.driver_connection
        return driver, arguments

    async def fetch(self, session: AsyncSession, **parameters: Any) -> list[Record]:
        connection, arguments = await self._prepare(session, parameters)
        rows: list[Record] = await connection.fetch(self.sql, *arguments)
        return rows

    async def fetchrow(self, session: AsyncSession, **parameters: Any) -> Record | None:
        connection, arguments = await self._prepare(session, parameters)
        row: Record | None = await connection.fetchrow(self.sql, *arguments)
        return row

    async def execute_in_transaction(self, session: AsyncSession, **parameters: Any) -> str:
        """Run a write inside the session's transaction, which must have begun on this
        connection already (see the module's docstring); returns asyncpg's status."""
        connection, arguments = await self._prepare(session, parameters)
        if not connection.is_in_transaction():
            raise RuntimeError(
                "the session's transaction has not begun on its connection: "
                "send the first write through session.execute"
            )
        status: str = await connection.execute(self.sql, *arguments)
        return status


def aware(value: datetime) -> datetime:
    """A timestamp read from the database (naive, holding UTC) as aware UTC."""
    return value.replace(tzinfo=UTC)
