"""Migrations 0004 and 0008: the models declare their indexes (no drift), and downgrade
removes them."""

from __future__ import annotations

import asyncpg

from coursehub.core.dburl import DatabaseConfig
from coursehub.db import migrations

MIGRATION_0004_INDEXES = {
    "Order_createdAt_id_idx",
    "Order_status_createdAt_id_idx",
    "Order_paymentStatus_createdAt_id_idx",
    "CourseEnrollment_userId_createdAt_id_idx",
}


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
    scratch_db: DatabaseConfig,
) -> None:
    await migrations.migrate(scratch_db)
    state = await migrations.status(scratch_db)

    assert await indexes_of_0004(scratch_db) == MIGRATION_0004_INDEXES
    assert "0004_admin_order_indexes" in state.applied
    assert state.drift == []

    await migrations.downgrade(scratch_db, "0003_catalogue_indexes")
    assert await indexes_of_0004(scratch_db) == set()

    await migrations.migrate(scratch_db)
    assert await indexes_of_0004(scratch_db) == MIGRATION_0004_INDEXES


async def test_0008_adds_the_refund_due_index_and_its_downgrade_removes_it(
    scratch_db: DatabaseConfig,
) -> None:
    await migrations.migrate(scratch_db)
    connection = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    try:
        definition = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'Order_refundDue_createdAt_id_idx'"
        )
        assert definition is not None
        assert "WHERE ((metadata ->> 'refundDue'::text) = 'true'::text)" in definition
        assert (await migrations.status(scratch_db)).drift == []

        await migrations.downgrade(scratch_db, "0007_published_category_index")
        gone = await connection.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'Order_refundDue_createdAt_id_idx'"
        )
        assert gone == 0
    finally:
        await connection.close()
