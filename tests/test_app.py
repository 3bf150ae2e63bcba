from __future__ import annotations

import httpx
import pytest

from coursehub.app import create_app
from coursehub.core.database import Database
from coursehub.core.dburl import parse_database_url
from coursehub.core.errors import ConfigurationError
from coursehub.core.settings import Settings


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
