"""core/database.py `check_out`: a connection of the engine's pool, taken directly (no
greenlet) when one is idle, the usual way otherwise.

What must hold: an idle connection is handed over without a greenlet, and is the same
warm connection; one that must be re-opened first (invalidated, softly or not) is
re-opened the usual way, with nothing left behind (its slot back in the pool, the old
server process gone, no warning of a connect never awaited); what runs later from work
started during a direct checkout can still open connections; an engine not made by
`create_engine` is always checked out the usual way; with none idle, the checkout waits
for one to come back, as `AsyncEngine.raw_connection()` does; a connection the server
ended while it was idle is replaced before anyone gets it.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.ext.asyncio import engine as async_engine_module
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util.concurrency import greenlet_spawn

from coursehub.core.database import Database, check_out
from coursehub.core.dburl import DatabaseConfig
from tests.queries import terminate


@pytest.fixture
async def single(db_config: DatabaseConfig) -> AsyncIterator[Database]:
    """A pool of one: every checkout is of the same slot."""
    database = Database(db_config, pool_size=1)
    yield database
    await database.dispose()


@pytest.fixture
def greenlets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions `AsyncEngine` runs in a greenlet from here on: a spy on
    `greenlet_spawn` (which still runs them), watching whether a checkout took one."""
    spawned: list[str] = []
    spawn = greenlet_spawn

    async def spy(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        spawned.append(getattr(fn, "__name__", repr(fn)))
        return await spawn(fn, *args, **kwargs)

    monkeypatch.setattr(async_engine_module, "greenlet_spawn", spy)
    return spawned


def _driver(pooled: PoolProxiedConnection) -> asyncpg.Connection:
    connection: asyncpg.Connection | None = pooled.driver_connection
    assert connection is not None, "the connection has been returned"
    return connection


def _pool_counts(engine: AsyncEngine) -> tuple[int, int]:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin(), pool.checkedout()


async def _backend_exists(config: DatabaseConfig, pid: int) -> bool:
    connection: asyncpg.Connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        for _ in range(100):  # a terminated backend leaves pg_stat_activity shortly after
            if not await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return False
            await asyncio.sleep(0.01)
        return True
    finally:
        await connection.close()


async def test_an_idle_connection_is_handed_over_without_a_greenlet(
    single: Database, greenlets: list[str]
) -> None:
    first = await check_out(single.engine)  # none yet: opened in a greenlet
    pid = _driver(first).get_server_pid()
    first.close()
    assert greenlets == ["raw_connection"]

    again = await check_out(single.engine)
    try:
        assert _driver(again).get_server_pid() == pid
        assert await _driver(again).fetchval("SELECT 1") == 1
    finally:
        again.close()
    assert greenlets == ["raw_connection"]  # no new one
    assert _pool_counts(single.engine) == (1, 0)


@pytest.mark.parametrize("soft", [True, False], ids=["soft invalidation", "invalidation"])
async def test_an_idle_connection_that_must_be_reopened_is_reopened(
    single: Database, greenlets: list[str], soft: bool
) -> None:
    pooled = await check_out(single.engine)
    old_pid = _driver(pooled).get_server_pid()
    # Soft: the connection stays open and the pool re-opens it at its next checkout, as
    # pool_recycle does with an old one. Hard: the pool closes it now, keeping the slot.
    pooled.invalidate(soft=soft)
    pooled.close()
    assert _pool_counts(single.engine) == (1, 0)
    greenlets.clear()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reopened = await check_out(single.engine)
        try:
            assert _driver(reopened).get_server_pid() != old_pid
            assert await _driver(reopened).fetchval("SELECT 1") == 1
            assert _pool_counts(single.engine) == (0, 1)  # the slot put back, then retaken
        finally:
            reopened.close()
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert [str(w.message) for w in caught] == []
    assert greenlets == ["raw_connection"]  # re-opened the usual way
    assert _pool_counts(single.engine) == (1, 0)
    if soft:  # (a hard invalidation closed it itself)
        assert not await _backend_exists(single.config, old_pid)

    # And the connection re-opened is the one handed over directly from then on.
    again = await check_out(single.engine)
    again.close()
    assert greenlets == ["raw_connection"]


async def test_work_started_during_a_direct_checkout_can_open_connections_later(
    single: Database, db_config: DatabaseConfig
) -> None:
    """A direct checkout that re-opens a connection terminates the old one, and asyncpg
    starts that connection's async termination listeners as tasks, there and then. They
    must not inherit the direct checkout's refusal to connect."""
    other = Database(db_config, pool_size=1)  # a pool with nothing open yet
    opened: list[int] = []

    async def on_terminated(connection: asyncpg.Connection) -> None:
        await asyncio.sleep(0)  # the checkout that started us has returned by now
        pooled = await check_out(other.engine)
        try:
            opened.append(await _driver(pooled).fetchval("SELECT 1"))
        finally:
            pooled.close()

    try:
        pooled = await check_out(single.engine)
        _driver(pooled).add_termination_listener(on_terminated)
        pooled.invalidate(soft=True)
        pooled.close()
        reopened = await check_out(single.engine)  # terminates the old connection
        reopened.close()
        for _ in range(100):
            if opened:
                break
            await asyncio.sleep(0.01)
        assert opened == [1]
    finally:
        await other.dispose()


async def test_an_engine_made_elsewhere_is_checked_out_the_usual_way(
    db_config: DatabaseConfig, greenlets: list[str]
) -> None:
    """Only `create_engine`'s engines have what the direct checkout needs (its `do_connect`
    listener, no pre-ping); another engine's re-opened connection must not fail."""
    engine = create_async_engine(
        db_config.sqlalchemy_url(),
        connect_args=db_config.sqlalchemy_connect_args(),
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=True,
    )
    try:
        for soft in (None, True, False):
            pooled = await check_out(engine)
            try:
                assert await _driver(pooled).fetchval("SELECT 1") == 1
            finally:
                if soft is not None:
                    pooled.invalidate(soft=soft)
                pooled.close()
        assert greenlets == ["raw_connection"] * 3
    finally:
        await engine.dispose()


async def test_with_none_idle_a_checkout_waits_for_one_to_come_back(single: Database) -> None:
    held = await check_out(single.engine)
    connection = _driver(held)
    waiting = asyncio.create_task(check_out(single.engine))
    await asyncio.sleep(0.05)
    assert not waiting.done()

    held.close()
    handed = await asyncio.wait_for(waiting, timeout=5)
    try:
        assert _driver(handed) is connection
    finally:
        handed.close()
    assert _pool_counts(single.engine) == (1, 0)


@pytest.mark.parametrize("unit", ["read connection", "write transaction", "session"])
async def test_a_connection_the_server_ended_while_idle_is_replaced_at_checkout(
    single: Database, database: Database, unit: str
) -> None:
    """A restart ends every idle pooled connection. The next request gets a new one, not
    `InterfaceError: connection is closed` (which was a 500 on the driver's paths), with
    a greenlet only because opening one awaits."""
    async with single.read_connection() as first:
        old_pid = first.get_server_pid()
    await terminate(database, first)

    if unit == "read connection":
        async with single.read_connection() as reader:
            pid = await reader.fetchval("SELECT pg_backend_pid()")
    elif unit == "write transaction":
        async with single.write_transaction() as writer:
            connection = await writer.connection()
            pid = await connection.fetchval("SELECT pg_backend_pid()")
    else:
        async with single.transaction() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert pid != old_pid
    assert isinstance(single.engine.pool, QueuePool)
    assert single.engine.pool.checkedout() == 0
    # And it stays: the next checkout is the new connection, taken directly.
    async with single.read_connection() as again:
        assert await again.fetchval("SELECT pg_backend_pid()") == pid
