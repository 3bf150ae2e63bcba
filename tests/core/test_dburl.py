from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest

from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig, default_pool_size, parse_database_url
from coursehub.core.errors import ConfigurationError


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
    assert kwargs["server_settings"]["search_path"] == '"store"'
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
    ],
)
def test_to_url_round_trips(url: str) -> None:
    config = parse_database_url(url)

    assert parse_database_url(config.to_url()) == config


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
