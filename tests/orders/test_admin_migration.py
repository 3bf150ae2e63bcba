"""Migrations 0004 and 0008: the models declare their indexes (no drift), and downgrade
removes them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from coursehub.core.database import drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig
from coursehub.db import migrations
from tests.conftest import scratch_database_name

MIGRATION_0004_INDEXES = {
    "Order_createdAt_id_idx",
    "Order_status_createdAt_id_idx",
    "Order_paymentStatus_createdAt_id_idx",
    "CourseEnrollment_userId_createdAt_id_idx",
}


@pytest.fixture
async def scratch(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    config = server.with_database(scratch_database_name("orders"))
    await ensure_database_exists(config)
    yield config
    await drop_database(config)


async def indexes_of_0004(config: DatabaseConfig) -> set[str]:
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        rows = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE indexname = ANY($1::text[])",
            list(MIGRATION_0004_INDEXES),
        )
    finally:
        await connection.close()
    return {row[0] for row in rows}


async def test_upgrade_leaves_no_drift_and_downgrade_removes_the_indexes(
    scratch: DatabaseConfig,
) -> None:
    await migrations.migrate(scratch)
    state = await migrations.status(scratch)

    assert await indexes_of_0004(scratch) == MIGRATION_0004_INDEXES
    assert "0004_admin_order_indexes" in state.applied
    assert state.drift == []

    await migrations.downgrade(scratch, "0003_catalogue_indexes")
    assert await indexes_of_0004(scratch) == set()

    await migrations.migrate(scratch)
    assert await indexes_of_0004(scratch) == MIGRATION_0004_INDEXES


async def test_0008_adds_the_refund_due_index_and_its_downgrade_removes_it(
    scratch: DatabaseConfig,
) -> None:
    await migrations.migrate(scratch)
    connection = await asyncpg.connect(**scratch.asyncpg_connect_kwargs())
    try:
        definition = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'Order_refundDue_createdAt_id_idx'"
        )
        assert definition is not None
        assert "WHERE ((metadata ->> 'refundDue'::text) = 'true'::text)" in definition
        assert (await migrations.status(scratch)).drift == []

        await migrations.downgrade(scratch, "0007_published_category_index")
        gone = await connection.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'Order_refundDue_createdAt_id_idx'"
        )
        assert gone == 0
    finally:
        await connection.close()
