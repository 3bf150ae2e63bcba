from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import create_app
from coursehub.catalog.models import Course
from coursehub.core.database import Database
from coursehub.core.dburl import parse_database_url
from coursehub.core.errors import ConfigurationError
from coursehub.core.settings import Settings
from tests.factories import auth_headers, make_admin, make_user


async def test_healthz_answers_200_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_answers_503_when_the_database_does_not(settings: Settings) -> None:
    unreachable = Database(parse_database_url("postgresql://postgres@127.0.0.1:1/nowhere"))
    app = create_app(settings, database=unreachable)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        response = await c.get("/healthz")
    await unreachable.dispose()

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_production_refuses_the_shipped_secrets() -> None:
    production = Settings(_env_file=None, environment="production")

    with pytest.raises(ConfigurationError, match="COURSEHUB_SECRET_KEY"):
        create_app(production)


def test_production_starts_with_real_secrets() -> None:
    production = Settings(
        _env_file=None,
        environment="production",
        secret_key="k" * 48,
        payment_webhook_secret="w" * 48,
    )

    assert create_app(production).title == "CourseHub"


async def test_values_postgresql_cannot_store_are_a_422_and_write_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    buyer = await make_user(session)
    await session.commit()
    # A failed request rolls the shared session back: keep plain values, not the objects.
    admin_headers, buyer_headers = auth_headers(admin), auth_headers(buyer)
    before = await session.scalar(select(func.count()).select_from(Course))

    nul_title = await client.post(
        "/api/v1/admin/courses",
        json={
            "title": "Null\u0000byte",
            "duration": 60,
            "price": "100",
            "category": "misc",
            "level": "beginner",
        },
        headers=admin_headers,
    )
    nul_id = await client.post(
        "/api/v1/coupons/validate",
        json={"code": "ANY", "courseIds": ["a\u0000b"]},
        headers=buyer_headers,
    )
    nul_in_path = await client.get("/api/v1/courses/a%00b")

    for response in (nul_title, nul_id, nul_in_path):
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "unstorable_value"
    assert await session.scalar(select(func.count()).select_from(Course)) == before


async def test_a_body_that_is_not_utf8_is_a_400_malformed_request(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/auth/register", content=b"\x80{}", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
async def test_a_json_body_sent_under_another_type_is_a_415(
    client: httpx.AsyncClient, session: AsyncSession, content_type: str | None
) -> None:
    """What `curl -d` sends (form-urlencoded): FastAPI does not parse it, and it answered 422
    "Input should be a valid dictionary", as if the JSON were wrong."""
    admin = await make_admin(session)
    await session.commit()
    # A failed request rolls the shared session back: keep plain values, not the objects.
    admin_headers = auth_headers(admin)
    headers = {**admin_headers, **({"content-type": content_type} if content_type else {})}
    before = await session.scalar(select(func.count()).select_from(Course))
    body = json.dumps(
        {"title": "Typed", "duration": 60, "price": "100", "category": "misc", "level": "beginner"}
    ).encode()

    wrong_type = await client.post("/api/v1/admin/courses", content=body, headers=headers)
    no_body = await client.post("/api/v1/admin/courses", headers=admin_headers)
    as_json = await client.post("/api/v1/admin/courses", json={}, headers=admin_headers)

    assert wrong_type.status_code == 415, wrong_type.text
    assert wrong_type.json()["code"] == "unsupported_media_type"
    assert wrong_type.headers["content-type"] == "application/problem+json"
    # No body, or a JSON one that is wrong: the fields at fault, as before.
    assert (no_body.status_code, no_body.json()["code"]) == (422, "validation_failed")
    assert (as_json.status_code, as_json.json()["code"]) == (422, "validation_failed")
    assert await session.scalar(select(func.count()).select_from(Course)) == before


async def test_a_body_that_is_not_json_is_a_422_on_the_body(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()

    response = await client.patch(
        "/api/v1/me/enrollments/any-course",
        content=b'{"progress": 50',
        headers={**auth_headers(user), "content-type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    # The field is the body (FastAPI's location names the offset: not a field).
    assert response.json()["errors"] == [
        {
            "field": "body",
            "message": "not valid JSON: Expecting ',' delimiter at character 15",
            "code": "json_invalid",
        }
    ]


async def test_the_largest_course_a_body_can_hold_is_read(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    admin = await make_admin(session)
    await session.commit()
    # A 20,000-character description of characters outside the BMP, which JSON escapes as
    # a surrogate pair (12 bytes each): the largest course body, within the limit.
    body = json.dumps(
        {
            "title": "Largest body",
            "description": "\U0001f600" * 20_000,
            "duration": 60,
            "price": "100",
            "category": "misc",
            "level": "beginner",
            "features": ["f" * 200] * 30,
        }
    ).encode()
    assert 200_000 < len(body) <= settings.max_request_body_bytes

    response = await client.post(
        "/api/v1/admin/courses",
        content=body,
        headers={**auth_headers(admin), "content-type": "application/json"},
    )

    assert response.status_code == 201, response.text


async def test_a_body_over_the_limit_is_a_413_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    admin = await make_admin(session)
    await session.commit()
    headers = {**auth_headers(admin), "content-type": "application/json"}
    before = await session.scalar(select(func.count()).select_from(Course))
    body = json.dumps(
        {
            "title": "Too large",
            "description": "x" * settings.max_request_body_bytes,
            "duration": 60,
            "price": "100",
            "category": "misc",
            "level": "beginner",
        }
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    declared = await client.post("/api/v1/admin/courses", content=body, headers=headers)
    chunked = await client.post("/api/v1/admin/courses", content=chunks(), headers=headers)

    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "content_too_large"
    assert "content-length" not in chunked.request.headers
    assert await session.scalar(select(func.count()).select_from(Course)) == before


async def test_api_requests_answer_503_when_the_database_does_not(settings: Settings) -> None:
    unreachable = Database(parse_database_url("postgresql://postgres@127.0.0.1:1/nowhere"))
    app = create_app(settings, database=unreachable)
    # A transport that raises what leaves the app: a database that is down is answered,
    # not re-raised for the server to log as a crash.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        listing = await c.get("/api/v1/courses")
        detail = await c.get("/api/v1/courses/any-slug")
    await unreachable.dispose()

    for response in (listing, detail):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "5"


async def _deadlock_on_the_driver(database: Database) -> None:
    """Two write transactions each wait for the lock the other holds: PostgreSQL breaks
    the deadlock by failing one of them (DeadlockDetectedError, SQLSTATE 40P01)."""
    async with database.write_transaction() as one, database.write_transaction() as two:
        first, second = await one.connection(), await two.connection()
        await first.execute("SELECT pg_advisory_xact_lock(424201)")
        await second.execute("SELECT pg_advisory_xact_lock(424202)")
        outcomes = await asyncio.gather(
            first.execute("SELECT pg_advisory_xact_lock(424202)"),
            second.execute("SELECT pg_advisory_xact_lock(424201)"),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


async def _deadlock_in_sessions(database: Database) -> None:
    """The same through two sessions: SQLAlchemy's error, asyncpg's inside it."""
    async with database.transaction() as one, database.transaction() as two:
        lock = text("SELECT pg_advisory_xact_lock(:key)")
        await one.execute(lock, {"key": 424203})
        await two.execute(lock, {"key": 424204})
        outcomes = await asyncio.gather(
            one.execute(lock, {"key": 424204}),
            two.execute(lock, {"key": 424203}),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


async def test_a_deadlock_with_a_concurrent_request_is_a_409_to_retry(
    settings: Settings, committed_db: Database
) -> None:
    """A transaction PostgreSQL undid to break a deadlock (or a serialization failure) is
    the caller's conflict, to send again, not an internal error."""
    app = create_app(settings, database=committed_db)

    async def on_the_driver() -> None:
        await _deadlock_on_the_driver(committed_db)

    async def in_sessions() -> None:
        await _deadlock_in_sessions(committed_db)

    app.add_api_route("/deadlock/driver", on_the_driver)
    app.add_api_route("/deadlock/session", in_sessions)
    transport = httpx.ASGITransport(app=app)  # answered, not re-raised as a crash
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        for path in ("/deadlock/driver", "/deadlock/session"):
            response = await c.get(path)
            assert response.status_code == 409, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "transaction_conflict"
