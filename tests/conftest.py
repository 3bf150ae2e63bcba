"""Test infrastructure.

One database per test run, built by the real migrations (never `create_all`),
on the server named by TEST_DATABASE_URL or, with nothing set, on the embedded
PostgreSQL. It gets a unique name and is dropped at the end, so tests never
touch the developer's own data.

Each test runs inside an outer transaction that is rolled back at teardown
(SQLAlchemy's "joining a session into an external transaction"); the app's
session dependency is overridden to use that session, and its commits become
savepoint releases; the read-connection dependency yields that session's connection. Tests that must commit for real (concurrency, backups) use
`committed_db` instead, which empties the tables afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from coursehub.app import create_app
from coursehub.core.database import Database, drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig, parse_database_url
from coursehub.core.dependencies import get_read_connection, get_session, get_write_transaction
from coursehub.core.settings import Settings
from coursehub.core.sql import WriteTransaction
from coursehub.db.migrations import PRISMA_TABLES, migrate

TEST_SECRET = "test-secret-" + "x" * 40
TEST_WEBHOOK_SECRET = "test-webhook-secret"


def server_config() -> DatabaseConfig:
    """The server tests run on: TEST_DATABASE_URL, else the embedded PostgreSQL."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return parse_database_url(url)
    from coursehub.core.embedded import start_embedded_server

    home = Path(os.environ.get("COURSEHUB_HOME", ".coursehub"))
    return start_embedded_server(home)


def scratch_database_name(purpose: str) -> str:
    return f"coursehub_test_{purpose}_{os.getpid()}_{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def server() -> DatabaseConfig:
    return server_config()


@pytest.fixture(scope="session")
def db_config(server: DatabaseConfig) -> Iterator[DatabaseConfig]:
    config = server.with_database(scratch_database_name("run"))
    asyncio.run(ensure_database_exists(config))
    asyncio.run(migrate(config))
    yield config
    asyncio.run(drop_database(config))


@pytest.fixture
async def scratch_db(server: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    """A fresh, empty database of its own, dropped afterwards."""
    config = server.with_database(scratch_database_name("scratch"))
    await ensure_database_exists(config)
    yield config
    await drop_database(config)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        secret_key=TEST_SECRET,
        payment_webhook_secret=TEST_WEBHOOK_SECRET,
        payment_simulator=True,
    )


@pytest.fixture(scope="session")
async def database(db_config: DatabaseConfig) -> AsyncIterator[Database]:
    db = Database(db_config, pool_size=30)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def engine(database: Database) -> AsyncEngine:
    return database.engine


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield conn
        if outer.is_active:
            await outer.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session joined into the test's outer transaction; its commits are savepoints."""
    async with AsyncSession(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    ) as s:
        yield s


def share_test_session(app: FastAPI, session: AsyncSession) -> None:
    """Make every request of `app` work in the test's session (its outer transaction)."""

    async def session_in_test_transaction() -> AsyncIterator[AsyncSession]:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise

    async def read_connection_in_test_transaction() -> AsyncIterator[asyncpg.Connection]:
        # The test session's own connection, so reads see the test's uncommitted rows. A
        # failed statement aborts the transaction: roll back to the session's savepoint,
        # as a failed request's session would.
        raw = await (await session.connection()).get_raw_connection()
        try:
            yield raw.driver_connection
        except BaseException:
            await session.rollback()
            raise

    @asynccontextmanager
    async def savepoint() -> AsyncIterator[asyncpg.Connection]:
        # A savepoint on the test session's connection (asyncpg nests a `transaction()`
        # begun inside another as a savepoint), inside the session's own savepoint.
        raw = await (await session.connection()).get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        assert driver.is_in_transaction(), "the test's outer transaction has begun"
        async with driver.transaction():
            yield driver

    async def write_transaction_in_test_transaction() -> AsyncIterator[WriteTransaction]:
        # Begun by its first statement, as the real one; then ended as the session's
        # requests end theirs (committed, or rolled back on error), so a later failing
        # request of the session cannot roll this one's writes back.
        try:
            async with WriteTransaction(savepoint()) as writer:
                yield writer
            await session.commit()
        except BaseException:
            await session.rollback()
            raise

    app.dependency_overrides[get_session] = session_in_test_transaction
    app.dependency_overrides[get_read_connection] = read_connection_in_test_transaction
    app.dependency_overrides[get_write_transaction] = write_transaction_in_test_transaction


@pytest.fixture
async def client(
    session: AsyncSession, settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, every request sharing the test's session."""
    app = create_app(settings, database=database)
    share_test_session(app, session)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def empty_all_tables(engine: AsyncEngine) -> None:
    tables = ", ".join(f'"{t}"' for t in PRISMA_TABLES)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
async def committed_db(database: Database) -> AsyncIterator[Database]:
    """The run's database without the rollback wrapper, for tests that need real
    commits from several connections at once. Tables are emptied afterwards."""
    await empty_all_tables(database.engine)
    yield database
    await empty_all_tables(database.engine)


@pytest.fixture
async def committed_client(
    committed_db: Database, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app with its real, committing session dependency."""
    app = create_app(settings, database=committed_db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
