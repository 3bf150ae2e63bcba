"""core/database.py `Database.write_transaction`, and what core/sql.py runs in it.

What must hold: a write transaction commits when its block ends and leaves nothing when
it raises (also after a statement failed inside it); its connection comes from the
engine's pool and goes back; a write on a bare connection outside a transaction is
refused before anything is sent; objects made for it belong to no session and carry
their values as loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.core.sql import as_loaded, as_refreshed, attach_written, loaded_object
from coursehub.models import Role, User
from tests.core.test_read_connection import checked_out
from tests.core.test_sql import INSERT_USER, SELECT_ONE_USER, _user_values
from tests.factories import make_user
from tests.queries import terminate


async def _exists(database: Database, user_id: str) -> bool:
    async with database.read_connection() as reader:
        return await SELECT_ONE_USER.fetchrow(reader, user_id=user_id) is not None


async def test_a_write_transaction_commits_when_its_block_ends(committed_db: Database) -> None:
    before = checked_out(committed_db)
    async with committed_db.write_transaction() as writer:
        await INSERT_USER.fetch_in_transaction(writer, **_user_values(20))
        assert checked_out(committed_db) == before + 1
        assert (await writer.connection()).is_in_transaction()
        # Not visible to anyone else until the commit.
        assert not await _exists(committed_db, "sql-user-20")
    assert await _exists(committed_db, "sql-user-20")
    assert checked_out(committed_db) == before


async def test_a_write_transaction_that_raises_leaves_nothing(committed_db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with committed_db.write_transaction() as writer:
            await INSERT_USER.fetch_in_transaction(writer, **_user_values(21))
            # The same email again: the statement fails, the transaction is aborted.
            await INSERT_USER.fetch_in_transaction(
                writer, **{**_user_values(22), "email": "sql21@example.com"}
            )
    assert not await _exists(committed_db, "sql-user-21")
    # The connection went back to the pool usable: the next transaction works.
    async with committed_db.write_transaction() as writer:
        await INSERT_USER.fetch_in_transaction(writer, **_user_values(23))
    assert await _exists(committed_db, "sql-user-23")


async def test_a_write_transaction_takes_its_connection_at_its_first_statement(
    committed_db: Database,
) -> None:
    """Until a statement runs, nothing is held: slow work before it (sign-up's password
    hash) or a request refused before it costs no connection and no transaction."""
    before = checked_out(committed_db)
    async with committed_db.write_transaction() as writer:
        assert not writer.begun and checked_out(committed_db) == before
        row = await SELECT_ONE_USER.fetchrow(writer, user_id="nobody")  # a read begins it too
        assert row is None and writer.begun
        assert checked_out(committed_db) == before + 1
        assert (await writer.connection()).is_in_transaction()
    assert checked_out(committed_db) == before
    # One that never began ends with nothing to do, whether its block ends or raises.
    async with committed_db.write_transaction() as writer:
        pass
    with pytest.raises(LookupError):
        async with committed_db.write_transaction() as writer:
            raise LookupError
    assert not writer.begun and checked_out(committed_db) == before


async def test_a_write_outside_a_transaction_is_refused_unsent(committed_db: Database) -> None:
    async with committed_db.read_connection() as reader:
        with pytest.raises(RuntimeError, match="outside its transaction"):
            await INSERT_USER.fetch_in_transaction(reader, **_user_values(24))
    assert not await _exists(committed_db, "sql-user-24")


def _fields(user_id: str, email: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": user_id,
        "email": email,
        "username": user_id,
        "password": "x",
        "role": Role.user,
        "created_at": now,
        "updated_at": now,
    }


def test_a_loaded_object_holds_its_values_as_loaded() -> None:
    user = loaded_object(User, **_fields("plain-1", "plain@example.com"))
    state = inspect(user)
    assert state.transient and state.session is None
    assert user.email == "plain@example.com" and user.role is Role.user
    # Loaded, not set: no change to flush should it ever join a session.
    assert not state.attrs.email.history.has_changes()
    user.email = "changed@example.com"  # changes are tracked as usual
    assert state.attrs.email.history.added == ["changed@example.com"]


async def test_objects_of_a_write_transaction_belong_to_no_session(
    committed_db: Database,
) -> None:
    async with committed_db.write_transaction() as writer:
        user = as_loaded(writer, User, **_fields("plain-2", "plain2@example.com"))
        attach_written(writer, user)  # nothing to attach to
    assert inspect(user).session is None and user.username == "plain-2"


async def test_refreshed_objects_take_the_rows_values(session: AsyncSession) -> None:
    held = await make_user(session, email="held@example.com")
    kept = as_loaded(session, User, **_fields(held.id, "row@example.com"))
    assert kept is held and held.email == "held@example.com"  # loaded: not overwritten
    refreshed = as_refreshed(session, User, **_fields(held.id, "row@example.com"))
    assert refreshed is held and held.email == "row@example.com"
    assert not inspect(held).attrs.email.history.has_changes()  # as loaded: no UPDATE
    session.expunge(held)
    stored = await session.scalar(select(User.email).where(User.id == held.id))
    assert stored == "held@example.com"


async def test_a_broken_connection_is_discarded(committed_db: Database) -> None:
    before = checked_out(committed_db)
    with pytest.raises(asyncpg.InterfaceError):
        async with committed_db.write_transaction() as writer:
            connection = await writer.connection()
            await connection.close()  # the connection dies under the transaction
            await connection.fetch("SELECT 1")
    assert checked_out(committed_db) == before
    async with committed_db.write_transaction() as writer:
        assert await (await writer.connection()).fetchval("SELECT 1") == 1


async def test_a_transaction_that_fails_at_its_commit_raises_and_returns_its_connection(
    committed_db: Database,
) -> None:
    """A deferred constraint is checked at COMMIT: the failure is raised from the block's
    end, and the connection (not broken) goes back to the pool, usable."""
    before = checked_out(committed_db)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with committed_db.write_transaction() as writer:
            connection = await writer.connection()
            await connection.execute(
                "CREATE TEMP TABLE deferred_check (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
                " ON COMMIT DROP"
            )
            await connection.execute("INSERT INTO deferred_check VALUES (1), (1)")
    assert checked_out(committed_db) == before
    async with committed_db.write_transaction() as writer:
        connection = await writer.connection()
        assert not await connection.fetchval("SELECT to_regclass('pg_temp.deferred_check')")
        await INSERT_USER.fetch_in_transaction(writer, **_user_values(25))
    assert await _exists(committed_db, "sql-user-25")


async def test_a_connection_the_server_ended_raises_its_own_error_and_is_discarded(
    committed_db: Database,
) -> None:
    """The server ends the connection mid-transaction (a restart, an admin's
    pg_terminate_backend): the block's error — the connection is gone, which the API
    answers with 503 — is what is raised, not a failed ROLLBACK's, and the connection is
    not returned to the pool."""
    before = checked_out(committed_db)
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        async with committed_db.write_transaction() as writer:
            connection = await writer.connection()
            # Once asyncpg has seen the connection close, the statement's failure is raised
            # as the connection's loss (core/sql.py). Sent into the instant between the
            # server's farewell message and the close, it would fail as InternalClientError
            # (also a 503; seen once in a full run): `terminate` waits, for one outcome.
            await terminate(committed_db, connection)
            await INSERT_USER.fetch_in_transaction(writer, **_user_values(26))
    assert checked_out(committed_db) == before
    async with committed_db.write_transaction() as writer:
        await INSERT_USER.fetch_in_transaction(writer, **_user_values(27))
    assert await _exists(committed_db, "sql-user-27")
    assert not await _exists(committed_db, "sql-user-26")
