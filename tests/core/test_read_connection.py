"""core/database.py `Database.read_connection`: pooled connections for plain reads.

What must hold: a read sends one statement and leaves no transaction open, the engine's
statement listeners see it, the connection goes back to the engine's pool, and a
connection that broke during the read is discarded, not handed to the next request.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import Text, bindparam, event, select
from sqlalchemy.pool import QueuePool

from coursehub.core.database import Database
from coursehub.core.sql import DriverStatement
from coursehub.models import User
from tests.factories import make_user
from tests.queries import terminate

SELECT_EMAIL = DriverStatement(
    select(User.email).where(User.id == bindparam("user_id", type_=Text()))
)


def checked_out(database: Database) -> int:
    pool = database.engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def test_a_read_sees_committed_rows_in_no_transaction_and_returns_its_connection(
    committed_db: Database,
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session, email="reader@example.com")
    before = checked_out(committed_db)
    sent: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(committed_db.engine.sync_engine, "before_cursor_execute", log)
    try:
        async with committed_db.read_connection() as reader:
            assert checked_out(committed_db) == before + 1
            row = await SELECT_EMAIL.fetchrow(reader, user_id=user.id)
            assert not reader.is_in_transaction()
    finally:
        event.remove(committed_db.engine.sync_engine, "before_cursor_execute", log)

    assert row is not None and row[0] == "reader@example.com"
    assert sent == [SELECT_EMAIL.sql]
    assert checked_out(committed_db) == before


async def test_a_connection_that_broke_during_a_read_is_discarded(
    committed_db: Database,
) -> None:
    # A pool of one: the next read gets the same pooled slot, so a dead connection put
    # back would be the one it gets.
    single = Database(committed_db.config, pool_size=1)
    try:
        with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError)):
            async with single.read_connection() as reader:
                broken = reader
                # The server ends the connection, as a restart or a network cut would.
                await terminate(committed_db, reader)
                await SELECT_EMAIL.fetchrow(reader, user_id="anyone")

        assert checked_out(single) == 0
        for _ in range(2):
            async with single.read_connection() as reader:
                assert reader is not broken
                assert await SELECT_EMAIL.fetchrow(reader, user_id="anyone") is None
    finally:
        await single.dispose()


async def test_the_pool_hands_out_the_connection_returned_last(database: Database) -> None:
    """Last in, first out: one request after another reuse one warm connection (its
    server process and prepared statements hot) instead of cycling through every
    connection the pool has opened; the idle ones stay idle."""
    async with database.read_connection() as first, database.read_connection() as second:
        assert first is not second  # the pool now holds at least these two
    for _ in range(3):
        async with database.read_connection() as again:
            assert again is first
