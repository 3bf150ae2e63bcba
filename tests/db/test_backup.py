"""`coursehub db backup` / `restore`: complete, consistent, all or nothing."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from coursehub.core.database import analyze_after_commit, drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig, parse_database_url
from coursehub.core.models import new_id
from coursehub.db.backup import backup_database
from coursehub.db.dump_inspection import RestoreFailed
from coursehub.db.migrations import migrate
from coursehub.db.pgtools import ToolNotFound, choose, find_tool, find_tools, server_major
from coursehub.db.restore import TargetNotEmpty, restore_database
from coursehub.db.seed import seed_bulk_data, seed_demo_data
from coursehub.db.tool_processes import tool_environment
from tests.conftest import scratch_database_name
from tests.db.helpers import (
    broken_invariants,
    execute,
    fetch,
    fetchval,
    run_cli,
    schema_properties,
    schemas_with_tables,
    table_checksums,
)

pytestmark = pytest.mark.committing


@pytest.fixture
async def source_db(scratch_db: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A migrated database with the demo data and a small bulk dataset."""
    await migrate(scratch_db)
    await seed_demo_data(scratch_db)
    await seed_bulk_data(scratch_db, users=200, courses=30, orders=800, show_progress=False)
    yield scratch_db


@pytest.fixture
async def target_db(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A second, empty database to restore into."""
    config = server.with_database(scratch_database_name("target"))
    await ensure_database_exists(config)
    yield config
    await drop_database(config)


# --- finding the tools ---------------------------------------------------------------------


def fake_tool(directory: Path, name: str, version: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


async def test_a_tool_of_the_servers_major_version_is_preferred(tmp_path: Path) -> None:
    fake_tool(tmp_path / "a", "pg_dump", "17.2")
    fake_tool(tmp_path / "b", "pg_dump", "15.4")
    fake_tool(tmp_path / "c", "pg_dump", "16.1")
    directories = [tmp_path / d for d in ("a", "b", "c")]

    assert (await find_tool("pg_dump", 15, directories=directories)).version == "15.4"
    # No exact match: the nearest newer one (a newer pg_dump can dump an older server).
    assert (await find_tool("pg_dump", 14, directories=directories)).version == "15.4"
    assert (await find_tool("pg_dump", 16, directories=directories)).version == "16.1"


async def test_no_tool_new_enough_is_a_clear_error(tmp_path: Path) -> None:
    fake_tool(tmp_path / "old", "pg_dump", "13.9")

    with pytest.raises(ToolNotFound) as raised:
        await find_tool("pg_dump", 17, directories=[tmp_path / "old"])

    message = str(raised.value)
    assert "no pg_dump of PostgreSQL 17 or newer" in message
    assert "13.9 at " + str(tmp_path / "old" / "pg_dump") in message
    assert "PATH" in message and "/usr/lib/postgresql" in message and "wheel" in message
    assert "\n" not in message


def test_choose_never_takes_an_older_tool() -> None:
    from coursehub.db.pgtools import Tool

    tools = [Tool("pg_dump", "/x", 12, "12.1"), Tool("pg_dump", "/y", 14, "14.0")]
    assert choose(tools, 15) is None
    assert choose(tools, 13) == tools[1]
    assert server_major(150020) == 15 and server_major(170001) == 17


async def test_the_chosen_tools_fit_the_server(scratch_db: DatabaseConfig) -> None:
    major = server_major(int(await fetchval(scratch_db, "SHOW server_version_num")))

    tools = await find_tools(scratch_db, ("pg_dump", "pg_restore", "psql"))

    assert all(tool.major >= major for tool in tools.values())


def test_the_password_goes_through_the_environment_not_argv() -> None:
    config = DatabaseConfig(
        user="shop", password="s3cret!", host="db.internal", port=6543, database="store"
    )
    os.environ["PGSERVICE"] = "someone-elses"
    try:
        env = tool_environment(config)
    finally:
        del os.environ["PGSERVICE"]

    assert env["PGPASSWORD"] == "s3cret!" and env["PGHOST"] == "db.internal"
    assert env["PGDATABASE"] == "store" and env["PGPORT"] == "6543"
    assert "PGSERVICE" not in env


async def test_pg_dump_is_never_given_the_password_on_its_command_line(
    source_db: DatabaseConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server may trust local connections; the password must still travel right.
    with_password = replace(source_db, password="s3cret-pw")
    seen: list[tuple[tuple[str, ...], dict[str, str]]] = []
    real = asyncio.create_subprocess_exec

    async def spy(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        seen.append((args, kwargs.get("env") or {}))
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    await backup_database(with_password, tmp_path / "b.dump", plain=False, show_progress=False)

    dumps = [(a, env) for a, env in seen if a[0].endswith("pg_dump") and "--version" not in a]
    assert len(dumps) == 1
    args, env = dumps[0]
    assert not any("s3cret-pw" in arg for arg in args)
    assert env["PGPASSWORD"] == "s3cret-pw"


# --- backup and restore ------------------------------------------------------------------


async def test_restore_into_an_empty_database_reproduces_every_row(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    result = await backup_database(source_db, tmp_path, plain=False, show_progress=False)

    assert result.path.parent == tmp_path and result.path.suffix == ".dump"
    assert not list(tmp_path.glob(".*.partial"))
    await restore_database(target_db, result.path, force=False, show_progress=False)

    source = await table_checksums(source_db)
    assert source["Order"][0] == 800 and source["alembic_version"][0] == 1
    assert await table_checksums(target_db) == source
    # Analysed: the planner knows the restored tables before autovacuum gets to them.
    analysed = await fetchval(
        target_db,
        "SELECT count(DISTINCT tablename) FROM pg_stats WHERE schemaname = 'public'"
        " AND tablename IN ('Order', 'OrderItem', 'User', 'Course')",
    )
    assert analysed == 4


async def test_a_plain_backup_restores_with_psql(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    result = await backup_database(
        source_db, tmp_path / "backup.sql", plain=True, show_progress=False
    )
    psql = (await find_tools(target_db, ("psql",)))["psql"]

    # DATABASE.md's way: psql -d database < backup.sql
    with result.path.open("rb") as dump:
        completed = await asyncio.to_thread(
            subprocess.run,
            [psql.path, "-v", "ON_ERROR_STOP=1", "-q", "-X"],
            stdin=dump,
            env=tool_environment(target_db),
            capture_output=True,
        )

    assert completed.returncode == 0, completed.stderr
    assert await table_checksums(target_db) == await table_checksums(source_db)


@pytest.mark.parametrize("plain", [False, True], ids=["custom", "plain"])
async def test_a_backup_is_readable_by_its_owner_only(
    scratch_db: DatabaseConfig, tmp_path: Path, plain: bool
) -> None:
    """It holds password hashes and emails: with the usual umask it was written 0644, for
    every local user to read. A partial file left by a crashed run is made private too."""
    await migrate(scratch_db)
    target = tmp_path / ("backup.sql" if plain else "backup.dump")
    leftover = tmp_path / f".{target.name}.partial"
    leftover.write_bytes(b"from a crashed run")
    leftover.chmod(0o644)

    result = await backup_database(scratch_db, target, plain=plain, show_progress=False)

    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert not leftover.exists()


async def test_restore_reads_plain_sql_too(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    result = await backup_database(source_db, tmp_path / "b.sql", plain=True, show_progress=False)

    await restore_database(target_db, result.path, force=False, show_progress=False)

    assert await table_checksums(target_db) == await table_checksums(source_db)


async def test_restore_refuses_a_non_empty_target_without_force(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    result = await backup_database(source_db, tmp_path / "b.dump", plain=False, show_progress=False)
    await migrate(target_db)
    await seed_demo_data(target_db)
    before = await table_checksums(target_db)

    with pytest.raises(TargetNotEmpty, match="--force"):
        await restore_database(target_db, result.path, force=False, show_progress=False)
    assert await table_checksums(target_db) == before

    await restore_database(target_db, result.path, force=True, show_progress=False)
    assert await table_checksums(target_db) == await table_checksums(source_db)


async def test_a_migrated_but_unused_database_counts_as_empty(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    result = await backup_database(source_db, tmp_path / "b.dump", plain=False, show_progress=False)
    await migrate(target_db)

    await restore_database(target_db, result.path, force=False, show_progress=False)

    assert await table_checksums(target_db) == await table_checksums(source_db)


@pytest.mark.parametrize("plain", [False, True])
async def test_a_truncated_backup_fails_and_leaves_the_target_as_it_was(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path, plain: bool
) -> None:
    result = await backup_database(
        source_db, tmp_path / ("b.sql" if plain else "b.dump"), plain=plain, show_progress=False
    )
    data = result.path.read_bytes()
    truncated = tmp_path / ("cut.sql" if plain else "cut.dump")
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    await migrate(target_db)
    await seed_demo_data(target_db)
    before = await table_checksums(target_db)

    # --force: the old data would be dropped, were the restore not all or nothing.
    with pytest.raises(RestoreFailed, match="nothing was changed") as raised:
        await restore_database(target_db, truncated, force=True, show_progress=False)

    assert "\n" not in str(raised.value)
    assert await table_checksums(target_db) == before


async def test_a_corrupt_archive_fails_mid_way_and_changes_nothing(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    result = await backup_database(source_db, tmp_path / "b.dump", plain=False, show_progress=False)
    data = bytearray(result.path.read_bytes())
    # Keep the header and table of contents readable; garble the compressed table data.
    for offset in range(len(data) // 2, len(data) - 64, 97):
        data[offset] ^= 0x5A
    corrupt = tmp_path / "corrupt.dump"
    corrupt.write_bytes(bytes(data))
    await migrate(target_db)
    await seed_demo_data(target_db)
    before = await table_checksums(target_db)

    with pytest.raises(RestoreFailed, match="nothing was changed"):
        await restore_database(target_db, corrupt, force=True, show_progress=False)

    assert await table_checksums(target_db) == before


async def test_a_file_that_is_no_backup_is_refused(
    target_db: DatabaseConfig, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("these are not the rows you are looking for\n")

    with pytest.raises(RestoreFailed, match="not a readable pg_dump archive"):
        await restore_database(target_db, junk, force=True, show_progress=False)
    with pytest.raises(RestoreFailed, match="no such file"):
        await restore_database(target_db, tmp_path / "missing.dump", force=True)


async def test_a_backup_taken_during_writes_is_consistent(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    """Writers keep placing orders — the order first, its items a moment later, in one
    transaction — while the backup runs. A dump that is not one snapshot would catch
    orders without items, or items of orders it missed."""
    user_id = await fetchval(source_db, 'SELECT "id" FROM "User" LIMIT 1')
    courses = [
        (r["id"], r["price"])
        for r in await fetch(source_db, 'SELECT "id", "price" FROM "Course" LIMIT 3')
    ]
    stop = asyncio.Event()
    committed = 0

    async def writer(n: int) -> None:
        nonlocal committed
        connection = await asyncpg.connect(**source_db.asyncpg_connect_kwargs())
        try:
            i = 0
            while not stop.is_set():
                i += 1
                order_id = new_id()
                total = sum((price for _, price in courses), Decimal(0))
                async with connection.transaction():
                    await connection.execute(
                        'INSERT INTO "Order" ("id", "orderNumber", "userId", "amount", '
                        '"originalAmount", "updatedAt") VALUES ($1, $2, $3, $4, $4, now())',
                        order_id,
                        f"CH-TEST-{n}-{i}",
                        user_id,
                        total,
                    )
                    await asyncio.sleep(0.005)
                    for course_id, price in courses:
                        await connection.execute(
                            'INSERT INTO "OrderItem" ("id", "orderId", "courseId", "price") '
                            "VALUES ($1, $2, $3, $4)",
                            new_id(),
                            order_id,
                            course_id,
                            price,
                        )
                committed += 1
        finally:
            await connection.close()

    writers = [asyncio.create_task(writer(n)) for n in range(4)]
    await asyncio.sleep(0.3)
    before_backup = committed
    result = await backup_database(source_db, tmp_path / "b.dump", plain=False, show_progress=False)
    during_backup = committed - before_backup
    stop.set()
    await asyncio.gather(*writers)

    assert during_backup > 0, "no write committed while the backup ran"
    await restore_database(target_db, result.path, force=False, show_progress=False)
    restored = await fetchval(
        target_db, """SELECT count(*) FROM "Order" WHERE "orderNumber" LIKE 'CH-TEST-%'"""
    )
    assert 0 < restored < committed + 1
    broken = await broken_invariants(target_db)
    assert "originalAmount is the sum of the items" not in broken
    assert "every order has items" not in broken


async def test_the_event_loop_keeps_running_during_a_backup(
    source_db: DatabaseConfig, tmp_path: Path
) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await backup_database(source_db, tmp_path / "b.dump", plain=False, show_progress=False)
    done.set()
    await task

    assert ticks >= 5


# --- what a backup holds, and where a restore puts it ------------------------------------


async def a_store_in(config: DatabaseConfig, schema: str) -> DatabaseConfig:
    """`config` with `?schema=schema`, migrated and seeded with the demo data."""
    store = replace(config, schema=schema)
    await migrate(store)
    await seed_demo_data(store)
    return store


async def run_tool(config: DatabaseConfig, name: str, *args: str) -> str:
    """A PostgreSQL client tool on `config`'s database; its stdout (it must succeed)."""
    tool = (await find_tools(config, (name,)))[name]
    completed = await asyncio.to_thread(
        subprocess.run,
        [tool.path, *args],
        env=tool_environment(config),
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


async def whole_database_dump(config: DatabaseConfig, file: Path, *, plain: bool) -> Path:
    """What DATABASE.md's `pg_dump -d database > backup.sql` makes: every schema, and the
    large objects."""
    await run_tool(config, "pg_dump", f"--file={file}", "--format=" + ("p" if plain else "c"))
    return file


@pytest.mark.parametrize("plain", [False, True])
async def test_a_backup_is_the_stores_schema_alone_and_restores_over_its_own_database(
    source_db: DatabaseConfig, tmp_path: Path, plain: bool
) -> None:
    """The database holds another schema and a large object besides the store's. The
    backup leaves both out, so restoring it over its own database replaces the store's
    schema and nothing else (a whole-database dump failed: schema "..." already exists)."""
    await execute(
        source_db,
        "CREATE SCHEMA not_the_store; CREATE TABLE not_the_store.notes (body text);"
        " INSERT INTO not_the_store.notes VALUES ('kept'); SELECT lo_from_bytea(0, 'kept')",
    )
    result = await backup_database(
        source_db, tmp_path / ("b.sql" if plain else "b.dump"), plain=plain, show_progress=False
    )
    source = await table_checksums(source_db)
    await execute(source_db, """DELETE FROM "Coupon" WHERE "code" = 'FLAT300'""")

    await restore_database(source_db, result.path, force=True, show_progress=False)

    assert await table_checksums(source_db) == source
    assert await fetchval(source_db, "SELECT body FROM not_the_store.notes") == "kept"
    contents = (
        result.path.read_text()
        if plain
        else await run_tool(source_db, "pg_restore", "--list", str(result.path))
    )
    assert "not_the_store" not in contents
    assert "lo_create" not in contents and "BLOB" not in contents
    assert await fetchval(source_db, "SELECT count(*) FROM pg_largeobject_metadata") == 1


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize(
    ("backed_up", "restored_into"), [("public", "shop"), ("shop", "public"), ("My Shop", "public")]
)
async def test_a_backup_of_one_schema_is_not_restored_into_another(
    scratch_db: DatabaseConfig,
    target_db: DatabaseConfig,
    tmp_path: Path,
    plain: bool,
    backed_up: str,
    restored_into: str,
) -> None:
    """Restoring it said "Restored": the target's schema was emptied and the tables went
    into the schema the backup came from."""
    source = await a_store_in(scratch_db, backed_up)
    file = tmp_path / ("b.sql" if plain else "b.dump")
    await backup_database(source, file, plain=plain, show_progress=False)
    target = await a_store_in(target_db, restored_into)
    before = await table_checksums(target)
    tables_before = await schemas_with_tables(target)

    refused = await asyncio.to_thread(run_cli, "db", "restore", str(file), "--force", config=target)

    assert refused.returncode == 1, refused.stdout
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in refused.stderr
    assert f'schema "{backed_up}"' in errors[0] and f'schema "{restored_into}"' in errors[0]
    assert errors[0].endswith("nothing was changed")
    assert await table_checksums(target) == before
    assert await schemas_with_tables(target) == tables_before == {restored_into: 10}


@pytest.mark.parametrize(
    ("schema", "plain"),
    [("shop", True), ("MySchema", False), ("MySchema", True), ("My Shop", False)],
)
async def test_a_store_in_its_own_schema_backs_up_and_restores(
    scratch_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path, schema: str, plain: bool
) -> None:
    """`?schema=MySchema` made `pg_dump --schema=MySchema`, a pattern folded to lower case:
    `no matching schemas were found`. Other schemas of either database are left alone."""
    source = await a_store_in(scratch_db, schema)
    await execute(
        scratch_db, "CREATE TABLE public.bystander (n int); INSERT INTO bystander VALUES (1)"
    )
    await execute(
        target_db, "CREATE TABLE public.bystander (n int); INSERT INTO bystander VALUES (2)"
    )
    file = tmp_path / ("b.sql" if plain else "b.dump")
    await backup_database(source, file, plain=plain, show_progress=False)
    target = replace(target_db, schema=schema)

    await restore_database(target, file, force=False, show_progress=False)  # creates the schema
    assert await table_checksums(target) == await table_checksums(source)
    await execute(target, """DELETE FROM "Coupon" WHERE "code" = 'FLAT300'""")
    await restore_database(target, file, force=True, show_progress=False)  # keeps the schema

    assert await table_checksums(target) == await table_checksums(source)
    assert await schemas_with_tables(target) == {schema: 10, "public": 1}
    assert await fetchval(target_db, "SELECT n FROM public.bystander") == 2


@pytest.mark.parametrize("plain", [False, True])
async def test_a_dump_with_large_objects_is_refused_before_anything_changes(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path, plain: bool
) -> None:
    """pg_dump writes large objects in BEGIN … COMMIT of its own, which committed the
    restore's transaction half-way: a failure after it left the tables restored while
    the error said nothing was changed."""
    await execute(source_db, "SELECT lo_from_bytea(0, 'a large object')")
    dump = await whole_database_dump(
        source_db, tmp_path / ("whole.sql" if plain else "whole.dump"), plain=plain
    )
    target = await a_store_in(target_db, "public")
    before = await table_checksums(target)

    with pytest.raises(RestoreFailed, match="large objects") as raised:
        await restore_database(target, dump, force=True, show_progress=False)

    assert str(raised.value).endswith("nothing was changed") and "\n" not in str(raised.value)
    assert await table_checksums(target) == before
    assert await fetchval(target, "SELECT count(*) FROM pg_largeobject_metadata") == 0


async def test_a_dump_of_several_schemas_is_refused_saying_how_to_take_the_stores_out(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    await execute(source_db, "CREATE SCHEMA not_the_store; CREATE TABLE not_the_store.t (n int)")
    messages = {}
    for plain in (False, True):
        dump = await whole_database_dump(
            source_db, tmp_path / ("whole.sql" if plain else "whole.dump"), plain=plain
        )
        with pytest.raises(RestoreFailed, match="several schemas") as raised:
            await restore_database(target_db, dump, force=True, show_progress=False)
        messages[plain] = str(raised.value)
        assert '("not_the_store", "public")' in messages[plain]
        assert messages[plain].endswith("nothing was changed")
        assert await schemas_with_tables(target_db) == {}

    # The way the message shows for an archive: the store's schema taken out of it.
    archive, extracted = tmp_path / "whole.dump", tmp_path / "store.sql"
    assert f"pg_restore --schema=public --file=store.sql {archive}" in messages[False]
    await run_tool(source_db, "pg_restore", "--schema=public", f"--file={extracted}", str(archive))
    await restore_database(target_db, extracted, force=False, show_progress=False)
    assert await table_checksums(target_db) == await table_checksums(source_db)


@pytest.mark.parametrize("plain", [False, True])
async def test_restore_keeps_the_schemas_owner_and_privileges(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path, plain: bool
) -> None:
    """The schema was dropped and re-created: PostgreSQL 15's public went from
    pg_database_owner with USAGE for everyone to the restoring role with no grants."""
    await execute(
        target_db,
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC;"
        " COMMENT ON SCHEMA public IS 'the store'",
    )
    before = await schema_properties(target_db)
    default_privileges = (
        "SELECT count(*) FROM pg_default_acl WHERE defaclnamespace = 'public'::regnamespace"
    )
    file = tmp_path / ("b.sql" if plain else "b.dump")
    await backup_database(source_db, file, plain=plain, show_progress=False)

    await restore_database(target_db, file, force=False, show_progress=False)
    assert await schema_properties(target_db) == before
    await restore_database(target_db, file, force=True, show_progress=False)

    assert await schema_properties(target_db) == before
    assert await fetchval(target_db, default_privileges) == 1
    assert await table_checksums(target_db) == await table_checksums(source_db)


# --- the CLI -----------------------------------------------------------------------------


async def test_cli_backup_and_restore(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    file = tmp_path / "store.dump"

    backed_up = await asyncio.to_thread(run_cli, "db", "backup", str(file), config=source_db)
    assert backed_up.returncode == 0, backed_up.stderr
    assert f"Backed up to {file}" in backed_up.stdout

    restored = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=target_db)
    assert restored.returncode == 0, restored.stderr
    assert await table_checksums(target_db) == await table_checksums(source_db)

    # Now the target holds data: without --force, one line and nothing changed.
    await fetch(target_db, """DELETE FROM "Coupon" WHERE "code" = 'FLAT300'""")
    before = await table_checksums(target_db)
    refused = await asyncio.to_thread(run_cli, "db", "restore", str(file), config=target_db)
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--force" in errors[0] and "Traceback" not in refused.stderr
    assert await table_checksums(target_db) == before

    forced = await asyncio.to_thread(
        run_cli, "db", "restore", str(file), "--force", config=target_db
    )
    assert forced.returncode == 0, forced.stderr
    assert await table_checksums(target_db) == await table_checksums(source_db)


async def test_cli_plain_backup_and_a_truncated_restore(
    source_db: DatabaseConfig, target_db: DatabaseConfig, tmp_path: Path
) -> None:
    file = tmp_path / "store.sql"
    backed_up = await asyncio.to_thread(
        run_cli, "db", "backup", "--plain", str(file), config=source_db
    )
    assert backed_up.returncode == 0, backed_up.stderr
    assert file.read_text().startswith("--\n-- PostgreSQL database dump")
    cut = tmp_path / "cut.sql"
    cut.write_bytes(file.read_bytes()[:-5000])

    failed = await asyncio.to_thread(run_cli, "db", "restore", str(cut), config=target_db)

    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "truncated" in errors[0]
    assert await table_checksums(target_db) == {}


async def test_the_emptiness_guard_inside_the_restore_transaction(
    source_db: DatabaseConfig,
) -> None:
    """Rows that arrive after the first check are caught again inside the transaction,
    before anything is dropped."""
    from coursehub.db.restore import NOT_EMPTY_MARKER, restore_prologue

    before = await table_checksums(source_db)
    connection = await asyncpg.connect(**source_db.asyncpg_connect_kwargs())
    try:
        with pytest.raises(asyncpg.PostgresError, match=NOT_EMPTY_MARKER):
            await connection.execute(restore_prologue(source_db.schema, force=False))
        await connection.execute("ROLLBACK")
    finally:
        await connection.close()
    assert await table_checksums(source_db) == before


async def test_statistics_that_cannot_be_refreshed_are_a_warning_not_a_failure() -> None:
    """ANALYZE runs after the restore or bulk seed has committed: if it fails, the data is
    still in, and the command says so instead of failing."""
    unreachable = parse_database_url("postgresql://postgres@127.0.0.1:1/gone?connect_timeout=2")
    warning = await analyze_after_commit(unreachable)
    assert warning is not None
    assert warning.startswith("the data is in") and warning.endswith("run ANALYZE on the database")


def test_a_plain_backup_of_public_leaves_out_the_statements_on_public_however_it_arrives() -> None:
    """pg_dump's output reaches the filter in pieces that need not end at a line's end."""
    from coursehub.db.backup import _PublicSchemaStatements

    dump = (
        b"SET row_security = off;\n\n-- Name: public; Type: SCHEMA; Schema: -; Owner: -\n\n"
        b"CREATE SCHEMA public;\n\nCOMMENT ON SCHEMA public IS 'standard public schema';\n\n"
        b'CREATE TABLE public."Note" (\n    body text\n);\n\n'
        b'COPY public."Note" (body) FROM stdin;\nCREATE SCHEMA public;\n\\.\n'
    )
    expected = dump.replace(b"\nCREATE SCHEMA", b"\n-- CREATE SCHEMA", 1).replace(
        b"COMMENT ON", b"-- COMMENT ON"
    )
    for size in (1, 7, len(dump)):
        statements = _PublicSchemaStatements()
        pieces = [statements.feed(dump[i : i + size]) for i in range(0, len(dump), size)]
        assert b"".join(pieces) + statements.finish() == expected
