"""Errors as problem+json (core/problems.py): what a caller's input or the database's state
causes is answered by a handler of its own class, in Starlette's ExceptionMiddleware, and
goes no further; only what is unexpected reaches the `Exception` handler, which Starlette
re-raises after the response for the server to log as a crash. The transports below raise
what leaves the app (`raise_app_exceptions=True`, httpx's default), as the server would log it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import create_app
from coursehub.catalog.models import Course
from coursehub.core.database import Database
from coursehub.core.dependencies import ReadConnectionDep, SessionDep, WriteTransactionDep
from coursehub.core.settings import Settings
from tests.conftest import share_test_session
from tests.factories import auth_headers, make_admin

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
async def raising_client(
    session: AsyncSession, settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The `client` fixture's, except that an exception leaving the app fails the test."""
    app = create_app(settings, database=database)
    share_test_session(app, session)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        yield c


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_unstorable_value_is_a_422_not_a_crash(
    raising_client: httpx.AsyncClient, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await make_admin(session)
    await session.commit()
    headers = auth_headers(admin)
    before = await session.scalar(select(func.count()).select_from(Course))

    with caplog.at_level(logging.INFO):
        on_the_driver = await raising_client.get("/api/v1/courses/a%00b")
        in_a_session = await raising_client.post(
            "/api/v1/admin/courses",
            json={
                "title": "Null\u0000byte",
                "duration": 60,
                "price": "100",
                "category": "misc",
                "level": "beginner",
            },
            headers=headers,
        )

    for response in (on_the_driver, in_a_session):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "unstorable_value"
    assert errors_logged(caplog) == []
    assert await session.scalar(select(func.count()).select_from(Course)) == before


async def test_timeouts_and_lost_connections_are_503s_not_crashes(
    settings: Settings, committed_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement or lock timeout an operator set (57014, 55P03), and a connection the
    server ended mid-request, in a session (SQLAlchemy's error, asyncpg's inside it) and on
    the driver: the database's state, answered with a 503 to retry."""
    app = create_app(settings, database=committed_db)

    async def session_statement_timeout(session: SessionDep) -> None:
        await session.execute(text("SET LOCAL statement_timeout = '10ms'"))
        await session.execute(text("SELECT pg_sleep(5)"))

    async def driver_statement_timeout(writer: WriteTransactionDep) -> None:
        connection = await writer.connection()
        await connection.execute("SET LOCAL statement_timeout = '10ms'")
        await connection.execute("SELECT pg_sleep(5)")

    async def session_lock_timeout(session: SessionDep) -> None:
        async with committed_db.write_transaction() as other:
            await (await other.connection()).execute("SELECT pg_advisory_xact_lock(424301)")
            await session.execute(text("SET LOCAL lock_timeout = '10ms'"))
            await session.execute(text("SELECT pg_advisory_xact_lock(424301)"))

    async def session_connection_lost(session: SessionDep) -> None:
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    async def driver_connection_lost(reader: ReadConnectionDep) -> None:
        await reader.fetch("SELECT pg_terminate_backend(pg_backend_pid())")

    expected: dict[str, tuple[Callable[..., Awaitable[None]], str]] = {
        "/session-statement-timeout": (session_statement_timeout, "database_timeout"),
        "/driver-statement-timeout": (driver_statement_timeout, "database_timeout"),
        "/session-lock-timeout": (session_lock_timeout, "database_timeout"),
        "/session-connection-lost": (session_connection_lost, "database_unavailable"),
        "/driver-connection-lost": (driver_connection_lost, "database_unavailable"),
    }
    for path, (endpoint, _) in expected.items():
        app.add_api_route(path, endpoint)
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            responses = {path: await c.get(path) for path in expected}

    for path, (_, code) in expected.items():
        response = responses[path]
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == code, path
        assert response.headers["retry-after"] == "5"
    assert errors_logged(caplog) == []


async def test_an_unexpected_error_is_a_500_logged_with_its_traceback(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error no rule recognises (a bug of ours: SQL that does not parse) is
    still a 500, logged once by the handler of its class; any other error too, by the
    handler of `Exception` (which Starlette then re-raises: the transport must not)."""
    app = create_app(settings, database=database)

    async def bad_sql(session: SessionDep) -> None:
        await session.execute(text("SELEC 1"))

    async def bug() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/bad-sql", bad_sql)
    app.add_api_route("/bug", bug)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    for path, error in (("/bad-sql", "ProgrammingError"), ("/bug", "RuntimeError")):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                response = await c.get(path)

        assert response.status_code == 500, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "internal_error"
        [logged] = errors_logged(caplog)
        assert logged.getMessage() == f"unhandled error on GET {path}"
        assert logged.exc_info is not None and logged.exc_info[0] is not None
        assert logged.exc_info[0].__name__ == error
