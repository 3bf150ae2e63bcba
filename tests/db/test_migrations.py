"""Migrations: up and down, adoption of Prisma databases, locking, interruption, drift."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from coursehub.core.database import drop_database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import ConfigurationError
from coursehub.core.locks import MIGRATION_LOCK_KEY
from coursehub.db import migrations
from coursehub.db.migrations import BASELINE_REVISION, MigrationError, head_revision, migrate
from tests.conftest import scratch_database_name
from tests.core.catalogue import missing_or_different, read_catalogue
from tests.db.helpers import execute, fetch, run_cli
from tests.test_cli import error_lines

PRISMA_DDL = (Path(__file__).parents[1] / "core" / "prisma_schema.sql").read_text()
# The indexes schema.prisma marks "added": a database made from DATABASE.md lacks them.
ADDED_INDEX_LINES = ("_idx",)


def prisma_baseline_ddl() -> str:
    """Prisma's DDL for DATABASE.md's schema: without the "added" plain indexes."""
    statements = [s for s in PRISMA_DDL.split(";\n") if s.strip()]
    return (
        ";\n".join(s for s in statements if not ("CREATE INDEX" in s and s.strip().endswith('")')))
        + ";\n"
    )


async def table_checksums(config: DatabaseConfig, tables: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for table in tables:
        rows = await fetch(
            config,
            f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{table}\" t",
        )
        result[table] = rows[0][0]
    return result


def all_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def test_upgrade_downgrade_upgrade(scratch_db: DatabaseConfig) -> None:
    await migrate(scratch_db)
    migrated = await read_catalogue(scratch_db)

    await migrations.downgrade(scratch_db, "base", undo_baseline=True)
    emptied = await read_catalogue(scratch_db)
    await migrate(scratch_db)
    again = await read_catalogue(scratch_db)

    assert {table for table, _ in emptied.columns} == {"alembic_version"}
    assert emptied.enums == {}
    assert again == migrated


async def test_every_revision_downgrades_one_step(scratch_db: DatabaseConfig) -> None:
    revisions = all_revisions()
    for revision in revisions:
        await migrate(scratch_db, revision)
        before = await read_catalogue(scratch_db)
        await migrations.downgrade(scratch_db, "-1", undo_baseline=True)
        await migrate(scratch_db, revision)

        assert await read_catalogue(scratch_db) == before, revision


async def test_fresh_database_reaches_head_and_reports_what_it_applied(
    scratch_db: DatabaseConfig,
) -> None:
    result = await migrate(scratch_db)
    second = await migrate(scratch_db)

    assert result.applied == all_revisions()
    assert result.after == head_revision()
    assert second.applied == []
    assert not result.adopted


async def _make_node_database(config: DatabaseConfig, ddl: str) -> None:
    """What the Node/Prisma app leaves: its tables, its history table, and data."""
    await execute(config, ddl)
    await execute(
        config,
        """
        CREATE TABLE "_prisma_migrations" (
            id VARCHAR(36) PRIMARY KEY, checksum VARCHAR(64) NOT NULL,
            finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL, logs TEXT,
            rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            applied_steps_count INTEGER NOT NULL DEFAULT 0);
        INSERT INTO "_prisma_migrations" (id, checksum, migration_name, finished_at, applied_steps_count)
        VALUES ('a1b2', 'c0ffee', '20250101000000_init', now(), 1);
        INSERT INTO "User" (id, email, username, password, "updatedAt")
        VALUES ('u-1', 'asha@example.com', 'asha',
                '$2b$10$abcdefghijklmnopqrstuuK6w7tC1H5dDDq4mUu1rV0W6YtF5kS2G', now());
        INSERT INTO "Course" (id, title, slug, duration, price, features, category, level,
                              "isPublished", "createdBy", "updatedAt")
        VALUES ('c-1', 'Python for Data Science', 'python-data', 600, 1499.5, '{video,quizzes}',
                'data', 'beginner', true, 'u-1', now());
        INSERT INTO "Order" (id, "orderNumber", "userId", status, amount, "originalAmount",
                             "paymentStatus", "updatedAt", metadata)
        VALUES ('o-1', 'ORD-1', 'u-1', 'completed', 1499.5, 1499.5, 'paid', now(), '{"gateway": "razorpay"}');
        INSERT INTO "OrderItem" (id, "orderId", "courseId", price) VALUES ('oi-1', 'o-1', 'c-1', 1499.5);
        INSERT INTO "CourseEnrollment" (id, "userId", "courseId", "orderId", "updatedAt")
        VALUES ('e-1', 'u-1', 'c-1', 'o-1', now());
        """,
    )


@pytest.mark.parametrize("ddl", ["baseline", "full"])
async def test_adopts_a_database_made_by_the_node_app(
    scratch_db: DatabaseConfig, db_config: DatabaseConfig, ddl: str
) -> None:
    await _make_node_database(
        scratch_db, prisma_baseline_ddl() if ddl == "baseline" else PRISMA_DDL
    )
    tables = (*migrations.PRISMA_TABLES, "_prisma_migrations")
    before = await table_checksums(scratch_db, tables)

    result = await migrate(scratch_db)

    assert result.adopted
    assert result.before == BASELINE_REVISION
    assert result.applied == all_revisions()[1:]
    assert await table_checksums(scratch_db, tables) == before
    # Now it has everything a database migrated by us has.
    assert (
        missing_or_different(await read_catalogue(db_config), await read_catalogue(scratch_db))
        == []
    )


async def test_refuses_tables_without_any_migration_history(scratch_db: DatabaseConfig) -> None:
    await execute(scratch_db, prisma_baseline_ddl())

    with pytest.raises(MigrationError, match="no migration history"):
        await migrate(scratch_db)


async def test_refuses_a_prisma_database_missing_baseline_tables(
    scratch_db: DatabaseConfig,
) -> None:
    await _make_node_database(scratch_db, prisma_baseline_ddl())
    await execute(scratch_db, 'DROP TABLE "CouponUsage"')

    with pytest.raises(MigrationError, match="CouponUsage"):
        await migrate(scratch_db)


async def test_concurrent_migrations_apply_each_revision_once(scratch_db: DatabaseConfig) -> None:
    results = await asyncio.gather(*(migrate(scratch_db) for _ in range(4)))

    applied = [revision for result in results for revision in result.applied]
    assert sorted(applied) == sorted(all_revisions())
    rows = await fetch(scratch_db, "SELECT version_num FROM alembic_version")
    assert [r[0] for r in rows] == [head_revision()]


@pytest.mark.parametrize(
    ("locked_table", "kept_revision"),
    [
        # 0002 indexes "Course": killed in the first revision, nothing is kept.
        ("Course", BASELINE_REVISION),
        # "User" is first indexed by 0005: the revisions before it were committed, each in
        # a transaction of its own, and stay.
        ("User", "0004_admin_order_indexes"),
    ],
)
async def test_a_migration_killed_half_way_completes_on_the_next_run(
    scratch_db: DatabaseConfig, locked_table: str, kept_revision: str
) -> None:
    await migrate(scratch_db, BASELINE_REVISION)
    # Hold a lock that a later revision's CREATE INDEX must wait for, start the
    # migration in a real process, and kill it while it waits.
    blocker = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute(f'LOCK TABLE "{locked_table}" IN ACCESS EXCLUSIVE MODE')
    env = {**os.environ, "DATABASE_URL": scratch_db.to_url()}
    process = subprocess.Popen(
        [sys.executable, "-m", "coursehub", "db", "migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # pg_stat_activity is snapshotted per transaction: watch from outside the blocker's.
    watcher = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    try:
        for _ in range(1200):  # up to a minute: a loaded machine starts Python slowly
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND application_name = 'coursehub'"
            )
            if waiting:
                break
            if process.poll() is not None:
                pytest.fail(f"the migration ended early: {process.stderr.read()!r}")  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        assert waiting, "the migration never reached the blocked statement"
        assert await watcher.fetchval("SELECT version_num FROM alembic_version") == kept_revision
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        await transaction.rollback()
        await blocker.close()
        await watcher.close()

    result = await migrate(scratch_db)

    assert result.after == head_revision()
    indexes = await fetch(
        scratch_db, "SELECT indexname FROM pg_indexes WHERE indexname = 'Order_status_idx'"
    )
    assert len(indexes) == 1


async def test_status_reports_pending_revisions_then_drift(scratch_db: DatabaseConfig) -> None:
    await migrate(scratch_db, BASELINE_REVISION)
    behind = await migrations.status(scratch_db)
    await migrate(scratch_db)
    clean = await migrations.status(scratch_db)
    await execute(scratch_db, 'ALTER TABLE "Course" ADD COLUMN "subtitle" TEXT')
    await execute(scratch_db, """ALTER TYPE "Role" ADD VALUE 'staff'""")
    drifted = await migrations.status(scratch_db)

    assert behind.pending == all_revisions()[1:]
    assert not behind.up_to_date
    assert clean.up_to_date and clean.drift == []
    assert any("subtitle" in change for change in drifted.drift)
    assert any("staff" in change and '"User".role' in change for change in drifted.drift)


async def test_makemigration_writes_a_numbered_revision_with_enum_changes(
    scratch_db: DatabaseConfig, tmp_path: Path
) -> None:
    script_location = tmp_path / "migrations"
    shutil.copytree(
        migrations.MIGRATIONS_DIRECTORY,
        script_location,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    await migrate(scratch_db)
    unchanged = await migrations.make_migration(
        scratch_db, "nothing", script_location=script_location
    )
    # The database has a label the models lack: the revision must sync the enum.
    await execute(scratch_db, """ALTER TYPE "EnrollmentStatus" ADD VALUE 'paused'""")

    path = await migrations.make_migration(
        scratch_db, "Sync enrollment statuses", script_location=script_location
    )

    assert unchanged is None
    assert path is not None
    name = Path(path).name
    number = int(all_revisions()[-1].split("_", 1)[0]) + 1
    assert name == f"{number:04d}_sync_enrollment_statuses.py"
    text = Path(path).read_text()
    assert "sync_enum_values" in text
    assert "EnrollmentStatus" in text


async def test_drop_everything_empties_the_schema_but_keeps_its_owner_and_grants(
    scratch_db: DatabaseConfig,
) -> None:
    await migrate(scratch_db)
    schema_row = (
        "SELECT nspowner::regrole::text, nspacl::text FROM pg_namespace WHERE nspname = 'public'"
    )
    before = await fetch(scratch_db, schema_row)

    await migrations.drop_everything(scratch_db)

    assert await fetch(scratch_db, schema_row) == before
    left = await fetch(
        scratch_db,
        """
        SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE nspname = 'public'
        UNION ALL
        SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE nspname = 'public'
        UNION ALL
        SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE nspname = 'public'
        """,
    )
    assert left == []
    # And the next migrate builds it all again.
    assert (await migrate(scratch_db)).after == head_revision()


async def test_drop_everything_drops_a_partitioned_table_with_its_partitions(
    scratch_db: DatabaseConfig,
) -> None:
    """A partitioned table depends internally on its own columns: the old listing of what to
    drop skipped every table with an internal dependency, and left it (and its partitions)."""
    await migrate(scratch_db)
    await execute(
        scratch_db,
        "CREATE TABLE events (at date NOT NULL) PARTITION BY RANGE (at);"
        "CREATE TABLE events_2026 PARTITION OF events"
        " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )

    await migrations.drop_everything(scratch_db)

    left = await fetch(
        scratch_db,
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE nspname = 'public'",
    )
    assert left == []


async def test_a_database_migrated_by_a_newer_coursehub_is_refused_in_one_line(
    scratch_db: DatabaseConfig,
) -> None:
    await migrate(scratch_db)
    await execute(scratch_db, "UPDATE alembic_version SET version_num = '0099_from_the_future'")

    with pytest.raises(MigrationError, match=r"0099_from_the_future.*Upgrade CourseHub"):
        await migrate(scratch_db)
    with pytest.raises(MigrationError, match="Upgrade CourseHub"):
        await migrations.status(scratch_db)


async def test_downgrading_to_an_unknown_revision_is_a_one_line_error(
    scratch_db: DatabaseConfig,
) -> None:
    await migrate(scratch_db)

    with pytest.raises(MigrationError) as failure:
        await migrations.downgrade(scratch_db, "nosuchrev")

    assert "nosuchrev" in str(failure.value) and "\n" not in str(failure.value)
    assert (await migrations.status(scratch_db)).current == head_revision()


async def test_cli_downgrade_refuses_to_undo_the_baseline_without_force(
    scratch_db: DatabaseConfig,
) -> None:
    from tests.test_cli import error_lines, run_cli

    await migrate(scratch_db)
    url = scratch_db.to_url()

    refused = await asyncio.to_thread(run_cli, "db", "downgrade", "base", database_url=url)
    one_step = await asyncio.to_thread(run_cli, "db", "downgrade", "-1", database_url=url)
    still_there = await fetch(scratch_db, 'SELECT count(*) FROM "User"')
    forced = await asyncio.to_thread(
        run_cli, "db", "downgrade", "base", "--force", database_url=url
    )

    assert refused.returncode == 1 and "--force" in error_lines(refused)[0]
    assert one_step.returncode == 0, one_step.stderr
    assert still_there[0][0] == 0  # the table survived the refusal
    assert forced.returncode == 0, forced.stderr
    assert await fetch(scratch_db, "SELECT 1 FROM pg_tables WHERE tablename = 'User'") == []


async def test_downgrade_refuses_every_form_of_target_that_undoes_the_baseline(
    scratch_db: DatabaseConfig,
) -> None:
    await migrate(scratch_db)
    # Relative to the head, to a named revision (whole or a prefix), or to base.
    targets = ["base", f"-{len(all_revisions())}", "0002-2", "0003_catalogue_indexes-3", "0001-1"]

    for target in targets:
        with pytest.raises(MigrationError, match=r"undoes the baseline.*--force"):
            await migrations.downgrade(scratch_db, target)
        assert (await migrations.status(scratch_db)).current == head_revision(), target

    kept = await migrations.downgrade(scratch_db, "0002-1")
    assert kept.after == BASELINE_REVISION
    assert kept.undone == all_revisions()[:0:-1]


async def test_cli_downgrade_relative_to_a_named_revision_keeps_the_baseline_of_a_seeded_database(
    scratch_db: DatabaseConfig,
) -> None:
    await migrate(scratch_db)
    seeded = await asyncio.to_thread(run_cli, "db", "seed", config=scratch_db)
    assert seeded.returncode == 0, seeded.stderr
    courses = await fetch(scratch_db, 'SELECT count(*) FROM "Course"')

    refused = await asyncio.to_thread(run_cli, "db", "downgrade", "0002-2", config=scratch_db)
    unknown = await asyncio.to_thread(run_cli, "db", "downgrade", "0002-9", config=scratch_db)
    one_step = await asyncio.to_thread(run_cli, "db", "downgrade", "0002-1", config=scratch_db)

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "--force" in error_lines(refused)[0] and len(error_lines(refused)) == 1
    assert unknown.returncode == 1 and len(error_lines(unknown)) == 1
    assert "0002-9" in error_lines(unknown)[0]
    assert one_step.returncode == 0, one_step.stderr
    assert f"Downgraded to {BASELINE_REVISION}" in one_step.stdout
    assert await fetch(scratch_db, 'SELECT count(*) FROM "Course"') == courses


async def test_downgrade_waits_for_the_migration_lock(scratch_db: DatabaseConfig) -> None:
    await migrate(scratch_db)
    holder = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    downgrading = asyncio.create_task(migrations.downgrade(scratch_db, "-1"))
    try:
        waiting = 0
        for _ in range(600):  # up to 30 s: until it waits for the lock, or is done without
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
            if waiting or downgrading.done():
                break
            await asyncio.sleep(0.05)
        assert waiting, "the downgrade did not wait for the migration lock"
        assert (await migrations.status(scratch_db)).current == head_revision()
    finally:
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        await holder.close()
        result = await downgrading

    assert result.after == all_revisions()[-2]


async def test_schema_changes_through_pgbouncer_are_refused_before_anything_changes(
    scratch_db: DatabaseConfig,
) -> None:
    # The refusal rests on `pgbouncer=true` alone: the real server stands in for PgBouncer.
    through_pgbouncer = replace(scratch_db, pgbouncer=True)

    fresh = await asyncio.to_thread(run_cli, "db", "migrate", config=through_pgbouncer)
    with pytest.raises(ConfigurationError, match="pgbouncer=true"):
        await migrate(through_pgbouncer)
    untouched = await fetch(
        scratch_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    await migrate(scratch_db)
    refused = [
        await asyncio.to_thread(run_cli, *command, config=through_pgbouncer)
        for command in (("db", "downgrade", "-1"), ("db", "reset", "--force"))
    ]
    with pytest.raises(ConfigurationError, match="pgbouncer=true"):
        await migrations.downgrade(through_pgbouncer, "-1")

    assert untouched == []
    for result in (fresh, *refused):
        assert result.returncode == 1, result.args
        assert len(error_lines(result)) == 1 and "Traceback" not in result.stderr
        assert "pgbouncer=true" in error_lines(result)[0]
    assert (await migrations.status(scratch_db)).current == head_revision()
    assert await fetch(scratch_db, "SELECT 1 FROM pg_tables WHERE tablename = 'User'") != []


def test_every_revision_id_fits_alembic_version() -> None:
    """`alembic_version.version_num` is VARCHAR(32): a longer revision id fails only when
    that migration is applied, after its own changes ran."""
    script = ScriptDirectory.from_config(migrations.alembic_config())
    revisions = [revision.revision for revision in script.walk_revisions()]

    assert len(revisions) >= 11
    assert [r for r in revisions if len(r) > 32] == []


async def test_concurrent_migrations_create_a_missing_database_and_schema_once(
    server: DatabaseConfig,
) -> None:
    """`db migrate` from several processes at once on a database (and a ?schema=) that does
    not exist yet: each creation may lose its race on the catalogue's unique index rather
    than see the other's object, and the loser failed ("duplicate key value"). The name has
    a double quote and capitals, which the CREATE DATABASE did not quote."""
    name = scratch_database_name('new"One')
    config = replace(server.with_database(name), schema="Shop")
    try:
        results = await asyncio.gather(*(migrate(config) for _ in range(6)))
    finally:
        created_schemas = await fetch(
            config, "SELECT count(*) FROM pg_namespace WHERE nspname = 'Shop'"
        )
        await drop_database(config)

    assert sorted(r for result in results for r in result.applied) == sorted(all_revisions())
    assert created_schemas[0][0] == 1
