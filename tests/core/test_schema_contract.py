"""The migrated database has everything `prisma migrate` creates from schema.prisma."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from coursehub.core.database import drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig
from tests.conftest import scratch_database_name
from tests.core.catalogue import missing_or_different, read_catalogue

PRISMA_DDL = (Path(__file__).parent / "prisma_schema.sql").read_text()


@pytest.fixture
async def prisma_made_database(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A database built by Prisma's own DDL: what the Node app's database looks like."""
    config = server.with_database(scratch_database_name("prisma"))
    await ensure_database_exists(config)
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        await connection.execute(PRISMA_DDL)
    finally:
        await connection.close()
    yield config
    await drop_database(config)


async def test_migrated_database_matches_prisma_schema(
    db_config: DatabaseConfig, prisma_made_database: DatabaseConfig
) -> None:
    expected = await read_catalogue(prisma_made_database)
    actual = await read_catalogue(db_config)

    assert len(expected.columns) == 82
    assert len(expected.constraints) == 20  # 9 primary keys, 11 foreign keys
    assert len(expected.indexes) == 28  # 9 primary keys, 10 unique, 9 plain
    assert len(expected.enums) == 5
    assert missing_or_different(expected, actual) == []


async def test_enum_labels_keep_prisma_order(db_config: DatabaseConfig) -> None:
    catalogue = await read_catalogue(db_config)

    assert catalogue.enums["OrderStatus"] == [
        "pending",
        "processing",
        "completed",
        "cancelled",
        "refunded",
    ]
    assert catalogue.enums["Role"] == ["user", "admin"]


async def test_comparison_notices_a_difference(
    db_config: DatabaseConfig, prisma_made_database: DatabaseConfig
) -> None:
    """The comparison itself can fail: drop one index from the Prisma-made copy's
    perspective by comparing the other way round with a changed default."""
    connection = await asyncpg.connect(**prisma_made_database.asyncpg_connect_kwargs())
    try:
        await connection.execute(
            'ALTER TABLE "UserPreference" ALTER COLUMN "theme" SET DEFAULT \'dark\''
        )
        await connection.execute('DROP INDEX "Order_status_idx"')
    finally:
        await connection.close()

    problems = missing_or_different(
        await read_catalogue(db_config), await read_catalogue(prisma_made_database)
    )

    assert any("UserPreference" in p and "theme" in p for p in problems)
    assert any("Order_status_idx" in p for p in problems)
