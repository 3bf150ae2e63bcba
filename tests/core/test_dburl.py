from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace

import asyncpg
import pytest
from sqlalchemy import text

from coursehub.core.database import Database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig, default_pool_size, parse_database_url
from coursehub.core.errors import ConfigurationError
from tests.test_cli import error_lines, run_cli


def test_prisma_env_url_is_read_as_is() -> None:
    config = parse_database_url("postgresql://user:p%40ss@localhost:5432/your_database_name")

    assert (config.user, config.password, config.host, config.port, config.database) == (
        "user",
        "p@ss",
        "localhost",
        5432,
        "your_database_name",
    )
    assert config.effective_pool_size == default_pool_size()
    assert config.pool_timeout == 10
    assert config.connect_timeout == 5


def test_prisma_parameters_are_honoured() -> None:
    config = parse_database_url(
        "postgresql://u@db:6543/shop?schema=store&connection_limit=7&pool_timeout=3"
        "&connect_timeout=2&sslmode=require&pgbouncer=true"
    )

    assert config.schema == "store"
    assert config.effective_pool_size == 7
    assert config.pool_timeout == 3
    assert config.sslmode == "require"
    kwargs = config.asyncpg_connect_kwargs()
    # Behind PgBouncer the schema is set in each transaction, not at connect (below).
    assert "search_path" not in kwargs["server_settings"]
    assert kwargs["statement_cache_size"] == 0
    assert kwargs["ssl"] == "require"
    assert kwargs["timeout"] == 2
    assert config.sqlalchemy_connect_args()["prepared_statement_cache_size"] == 0


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://u@h/db?sslmod=require", "sslmod"),
        ("postgresql://u@h/db?connection_limit=lots", "connection_limit"),
        ("postgresql://u@h/db?connection_limit=0", "connection_limit"),
        ("postgresql://u@h/db?sslmode=sometimes", "sslmode"),
        ("postgresql://u@h/db?pgbouncer=maybe", "pgbouncer"),
        ("mysql://u@h/db", "postgresql://"),
    ],
)
def test_bad_urls_name_the_problem(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url(url)

    assert named in str(raised.value)


def test_password_never_shown() -> None:
    config = parse_database_url("postgresql://admin:s3cret@db.internal:5432/store")

    assert "s3cret" not in config.redacted()
    assert config.redacted() == "postgresql://admin:***@db.internal:5432/store"


def test_unix_socket_host() -> None:
    config = parse_database_url("postgresql://postgres:@/coursehub?host=/tmp/pg")

    assert config.is_socket
    assert config.asyncpg_connect_kwargs()["host"] == "/tmp/pg"
    assert isinstance(config, DatabaseConfig)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/store",
        "postgresql://a%40b:p%2Fw@db:6543/shop?schema=s1&sslmode=require&connection_limit=4",
        "postgresql://postgres@/coursehub?host=/tmp/some/dir",
        # Debian's second cluster: the port names the socket file, .s.PGSQL.5433.
        "postgresql://u@localhost:5433/db?host=/var/run/postgresql",
        "postgresql://u@%2Fvar%2Frun%2Fpostgresql:5433/db",
        "postgresql://u@[::1]:5433/db",
        "postgresql://u@[2001:db8::ff]/db",
        "postgresql://u@[fe80::1%25eth0]:6543/db",
        "postgresql://u@localhost/db?host=::1",
    ],
)
def test_to_url_round_trips(url: str) -> None:
    """`coursehub bench` and the CLI hand `to_url()` to child processes: they must reach
    the same server (tests/core/test_dburl_round_trip.py: every form)."""
    config = parse_database_url(url)

    assert parse_database_url(config.to_url()) == config


def test_a_socket_url_keeps_its_port_for_children_and_on_display() -> None:
    config = parse_database_url("postgresql://u@localhost:5433/db?host=/var/run/postgresql")

    assert (config.host, config.port) == ("/var/run/postgresql", 5433)
    assert parse_database_url(config.to_url()).port == 5433
    assert ":5433/" in config.redacted()


async def default_to_repeatable_read(config: DatabaseConfig) -> None:
    """Make REPEATABLE READ the database's default, as a DBA might."""
    admin = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        await admin.execute(
            f'ALTER DATABASE "{config.database}" '
            "SET default_transaction_isolation = 'repeatable read'"
        )
    finally:
        await admin.close()


async def test_the_stores_connections_are_read_committed_whatever_the_databases_default(
    scratch_db: DatabaseConfig,
) -> None:
    """Checkout's coupon claims count after a lock, on a statement's own snapshot
    (coupons/repository.py): a database or role defaulting to REPEATABLE READ must not
    change that for the store's connections."""
    await default_to_repeatable_read(scratch_db)
    plain = await asyncpg.connect(**{**scratch_db.asyncpg_connect_kwargs(), "server_settings": {}})
    store = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    try:
        assert await plain.fetchval("SHOW default_transaction_isolation") == "repeatable read"
        async with store.transaction():
            assert await store.fetchval("SHOW transaction_isolation") == "read committed"
    finally:
        await plain.close()
        await store.close()


def test_behind_pgbouncer_no_untracked_startup_parameter_is_sent() -> None:
    """PgBouncer refuses a startup parameter it does not track: the isolation level is then
    said in the write transactions' BEGIN instead."""
    config = parse_database_url("postgresql://u@db:6432/shop?pgbouncer=true")
    assert "default_transaction_isolation" not in config.server_settings()
    assert (
        parse_database_url("postgresql://u@db/shop").server_settings()[
            "default_transaction_isolation"
        ]
        == "read committed"
    )


async def test_write_transactions_are_read_committed_behind_any_default(
    scratch_db: DatabaseConfig,
) -> None:
    await default_to_repeatable_read(scratch_db)
    # As behind PgBouncer: no startup setting; the BEGIN says it.
    database = Database(replace(scratch_db, pgbouncer=True), pool_size=1)
    try:
        async with database.write_transaction() as writer:
            connection = await writer.connection()
            assert await connection.fetchval("SHOW transaction_isolation") == "read committed"
    finally:
        await database.dispose()


# --- numbers: what the driver and the client tools would refuse or misread ----------------


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("socket_timeout", "0"),  # asyncpg refuses it (and in Prisma it ends every query)
        ("socket_timeout", "nan"),
        ("connect_timeout", "inf"),
        ("connect_timeout", "1e12"),  # libpq reads PGCONNECT_TIMEOUT as a C int
        ("pool_timeout", "nan"),
        ("connection_limit", "2.5"),
        ("connection_limit", "nan"),
        ("statement_cache_size", "0.5"),
        ("statement_cache_size", "inf"),
    ],
)
def test_numbers_the_driver_or_the_tools_cannot_take_are_refused_naming_them(
    parameter: str, value: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_database_url(f"postgresql://u@h/db?{parameter}={value}")

    assert f"parameter {parameter}" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_refused_number_is_one_line_from_the_cli(server: DatabaseConfig) -> None:
    url = server.to_url()
    result = run_cli(
        "db", "status", database_url=url + ("&" if "?" in url else "?") + "socket_timeout=0"
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(error_lines(result)) == 1 and "socket_timeout" in error_lines(result)[0]


async def test_zero_timeouts_mean_no_limit_for_the_driver_and_the_tools(
    server: DatabaseConfig,
) -> None:
    url = server.with_database("postgres").to_url()
    config = parse_database_url(
        url + ("&" if "?" in url else "?") + "connect_timeout=0&pool_timeout=0"
    )

    env = config.libpq_environment()
    assert env["PGCONNECT_TIMEOUT"] == "0"  # libpq's "wait indefinitely"
    assert replace(config, connect_timeout=2.5).libpq_environment()["PGCONNECT_TIMEOUT"] == "3"
    psql = shutil.which("psql")
    if psql is not None:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        answered = subprocess.run(
            [psql, "--no-psqlrc", "--tuples-only", "--no-align", "--command=SELECT 1"],
            env={**inherited, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (answered.returncode, answered.stdout.strip()) == (0, "1"), answered.stderr
    database = Database(config, pool_size=1)
    try:
        assert database.engine.pool.timeout() is None  # type: ignore[attr-defined]
        assert await database.ping()
    finally:
        await database.dispose()


# --- behind PgBouncer: the schema without a startup parameter --------------------------


async def _two_schemas(config: DatabaseConfig) -> None:
    """A table `item` in the public schema and in "fix shop", told apart by their rows."""
    admin = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        await admin.execute(
            'CREATE SCHEMA "fix shop"; '
            "CREATE TABLE public.item (name text); INSERT INTO public.item VALUES ('public'); "
            """CREATE TABLE "fix shop".item (name text); INSERT INTO "fix shop".item VALUES ('shop')"""
        )
    finally:
        await admin.close()


async def _sent(config: DatabaseConfig, statements: list[str]) -> asyncpg.Connection:
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    connection.add_query_logger(lambda logged: statements.append(logged.query))
    return connection


async def test_behind_pgbouncer_the_schema_is_set_in_each_transaction(
    scratch_db: DatabaseConfig,
) -> None:
    """PgBouncer refuses `search_path` as a startup parameter, and in transaction mode a
    session's SET would land on whichever server connection ran it. So: no startup
    parameter, and `SET LOCAL` in each transaction, for the session's, the write
    transactions' and the plain reads' (each then in a transaction of its own)."""
    await _two_schemas(scratch_db)
    config = replace(scratch_db, schema="fix shop", pgbouncer=True)
    assert "search_path" not in config.asyncpg_connect_kwargs()["server_settings"]
    # Nor for the client tools, as `options` (which PgBouncer refuses too).
    assert "PGOPTIONS" not in config.libpq_environment()

    statements: list[str] = []
    connection = await _sent(config, statements)
    try:
        assert await connection.fetchval("SELECT name FROM item") == "shop"
        async with connection.transaction():
            assert await connection.fetchval("SELECT name FROM item") == "shop"
        assert not connection.is_in_transaction()
        # The session itself kept the server's default: only transactions had the schema.
        plain = asyncpg.Connection.fetchval
        assert await plain(connection, "SELECT current_schema()") == "public"
    finally:
        await connection.close()
    assert statements.count('SET LOCAL search_path TO "fix shop"') == 2

    database = Database(config, pool_size=1)
    try:
        async with database.write_transaction() as writer:
            driver = await writer.connection()
            assert await driver.fetchval("SELECT name FROM item") == "shop"
        async with database.read_connection() as reader:
            assert await reader.fetchval("SELECT name FROM item") == "shop"
        async with database.transaction() as session:
            assert (await session.execute(text("SELECT name FROM item"))).scalar() == "shop"
    finally:
        await database.dispose()

    # The round trip is for these connections only. Without PgBouncer the schema is a
    # startup parameter; behind it with the default schema there is nothing to set.
    for elsewhere, schema in (
        (replace(scratch_db, schema="fix shop"), "shop"),
        (replace(scratch_db, pgbouncer=True), "public"),
    ):
        statements.clear()
        connection = await _sent(elsewhere, statements)
        try:
            async with connection.transaction():
                assert await connection.fetchval("SELECT name FROM item") == schema
        finally:
            await connection.close()
        assert not any("search_path" in statement for statement in statements)


async def test_a_schema_is_made_whatever_its_name(scratch_db: DatabaseConfig) -> None:
    """`?schema=` names the schema exactly, quotes, spaces and capitals included: it is
    created as named (a `"` in it broke the CREATE SCHEMA)."""
    name = 'Shop "A" 1'
    await ensure_database_exists(replace(scratch_db, schema=name))

    connection = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", name
        )
    finally:
        await connection.close()
    assert found == 1
