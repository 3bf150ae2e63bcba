"""core/database.py `check_out`: a connection of the engine's pool, taken directly (no
greenlet) when one is idle, the usual way otherwise.

What must hold: an idle connection is handed over without a greenlet, and is the same
warm connection; one that must be re-opened first (invalidated, softly or not) is
re-opened the usual way, with nothing left behind (its slot back in the pool, the old
server process gone, no warning of a connect never awaited); with none idle, the
checkout waits for one to come back, as `AsyncEngine.raw_connection()` does.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util.concurrency import in_greenlet

from coursehub.core.database import Database, check_out
from coursehub.core.dburl import DatabaseConfig


@pytest.fixture
async def single(db_config: DatabaseConfig) -> AsyncIterator[Database]:
    """A pool of one: every checkout is of the same slot."""
    database = Database(db_config, pool_size=1)
    yield database
    await database.dispose()


def _record_checkouts(database: Database) -> list[bool]:
    """Whether each checkout of the pool ran inside a greenlet."""
    in_a_greenlet: list[bool] = []
    event.listen(
        database.engine.sync_engine.pool,
        "checkout",
        lambda *_: in_a_greenlet.append(in_greenlet()),
    )
    return in_a_greenlet


def _driver(pooled: PoolProxiedConnection) -> asyncpg.Connection:
    connection: asyncpg.Connection | None = pooled.driver_connection
    assert connection is not None, "the connection has been returned"
    return connection


def _pool_counts(database: Database) -> tuple[int, int]:
    pool = database.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin(), pool.checkedout()


async def _backend_exists(database: Database, pid: int) -> bool:
    connection: asyncpg.Connection = await asyncpg.connect(
        **database.config.asyncpg_connect_kwargs()
    )
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


async def test_an_idle_connection_is_handed_over_without_a_greenlet(single: Database) -> None:
    in_a_greenlet = _record_checkouts(single)
    first = await check_out(single.engine)  # none yet: opened in a greenlet
    pid = _driver(first).get_server_pid()
    first.close()

    again = await check_out(single.engine)
    try:
        assert _driver(again).get_server_pid() == pid
        assert await _driver(again).fetchval("SELECT 1") == 1
    finally:
        again.close()
    assert in_a_greenlet == [True, False]
    assert _pool_counts(single) == (1, 0)


@pytest.mark.parametrize("soft", [True, False], ids=["soft invalidation", "invalidation"])
async def test_an_idle_connection_that_must_be_reopened_is_reopened(
    single: Database, soft: bool
) -> None:
    in_a_greenlet = _record_checkouts(single)
    pooled = await check_out(single.engine)
    old_pid = _driver(pooled).get_server_pid()
    # Soft: the connection stays open and the pool re-opens it at its next checkout, as
    # pool_recycle does with an old one. Hard: the pool closes it now, keeping the slot.
    pooled.invalidate(soft=soft)
    pooled.close()
    assert _pool_counts(single) == (1, 0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reopened = await check_out(single.engine)
        try:
            assert _driver(reopened).get_server_pid() != old_pid
            assert await _driver(reopened).fetchval("SELECT 1") == 1
            assert _pool_counts(single) == (0, 1)  # the slot was put back, then retaken
        finally:
            reopened.close()
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert [str(w.message) for w in caught] == []
    assert in_a_greenlet == [True, True]  # re-opened the usual way
    assert _pool_counts(single) == (1, 0)
    assert not await _backend_exists(single, old_pid)

    # And the connection re-opened is the one handed over directly from then on.
    again = await check_out(single.engine)
    again.close()
    assert in_a_greenlet == [True, True, False]


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
    assert _pool_counts(single) == (1, 0)
