from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
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


async def test_api_requests_answer_503_when_the_database_does_not(settings: Settings) -> None:
    unreachable = Database(parse_database_url("postgresql://postgres@127.0.0.1:1/nowhere"))
    app = create_app(settings, database=unreachable)
    # Errors of the catch-all handler are re-raised after the response; it is the response
    # that counts.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        listing = await c.get("/api/v1/courses")
        detail = await c.get("/api/v1/courses/any-slug")
    await unreachable.dispose()

    for response in (listing, detail):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "5"
