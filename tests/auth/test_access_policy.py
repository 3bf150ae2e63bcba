"""Every route has an explicit access policy, and the policy holds.

The test walks the app's route table — whatever routes exist when it runs, so a route
added later is checked without touching this file — and for each:
- fails if the route declares no policy (`Public`, `CurrentUser` or `AdminUser`, or
  `WritingUser` / `WritingAdmin`, the same two on a write transaction);
- for a non-public route: 401 without a token, with an expired token, a forged one, an
  unsigned one, a refresh token in place of an access token, and a token of a deleted
  user; 403 for a plain user on an admin route; the right token gets past the policy.
Path parameters get dummy values; no body is sent: the policy answers before the body
is read, so the routes' own validation never gets a say.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.app import API_PREFIX, create_app
from coursehub.auth.dependencies import (
    AdminUser,
    CurrentUser,
    Public,
    public,
    require_admin,
    require_admin_writing,
    require_user,
    require_user_read_apart,
    require_user_writing,
)
from coursehub.core.database import Database
from coursehub.core.dependencies import get_write_transaction
from coursehub.core.security import create_token
from coursehub.core.settings import Settings
from coursehub.models import User
from tests.conftest import TEST_SECRET, TEST_WEBHOOK_SECRET, share_test_session
from tests.factories import access_token, bearer, make_admin, make_user

# Routes outside the API that answer anyone by design: the health check.
INFRASTRUCTURE_ROUTES = {"/healthz"}
DUMMY_ID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class RouteUnderTest:
    method: str
    path: str  # as declared, e.g. /api/v1/admin/users/{user_id}
    url: str  # with dummy path parameters
    policy: str | None  # "public", "user", "admin", or None when it declares none
    write_transaction: bool = False  # its unit of work is a write transaction

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def policy_of(dependant: Dependant) -> str | None:
    calls = set(_calls(dependant))
    if require_admin in calls or require_admin_writing in calls:
        return "admin"
    if calls & {require_user, require_user_writing, require_user_read_apart}:
        return "user"
    if public in calls:
        return "public"
    return None


def _dummy_value(annotation: Any) -> str:
    return "1" if annotation is int else DUMMY_ID


def _api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute, Dependant]]:
    """(full path, route, dependant) of every API route, through included routers."""
    try:  # FastAPI ≥ 0.16x resolves included routers lazily
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI flattens them itself
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, route, route.dependant
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            assert context.path is not None
            yield context.path, context.original_route, context.dependant


def routes_of(app: FastAPI) -> list[RouteUnderTest]:
    found = []
    for path, route, dependant in _api_routes(app):
        url = path
        for param in dependant.path_params:
            url = url.replace("{" + param.name + "}", _dummy_value(param.field_info.annotation))
        for method in sorted((route.methods or set()) - {"HEAD"}):
            writes = get_write_transaction in set(_calls(dependant))
            found.append(RouteUnderTest(method, path, url, policy_of(dependant), writes))
    return found


def app_settings() -> Settings:
    # As tests/conftest.py's `settings`: the payment simulator is on, so its route is here.
    return Settings(
        _env_file=None,
        environment="test",
        secret_key=TEST_SECRET,
        payment_webhook_secret=TEST_WEBHOOK_SECRET,
        payment_simulator=True,
    )


ROUTES = routes_of(create_app(app_settings()))
API_ROUTES = [r for r in ROUTES if r.path.startswith(API_PREFIX)]
PROTECTED = [r for r in API_ROUTES if r.policy in ("user", "admin")]
ADMIN_ONLY = [r for r in API_ROUTES if r.policy == "admin"]


def test_the_walk_finds_the_api() -> None:
    paths = {r.path for r in API_ROUTES}
    # Smoke check that the walk sees through included routers: a few known routes.
    assert {"/api/v1/me", "/api/v1/admin/users/{user_id}", "/api/v1/courses"} <= paths
    assert len(PROTECTED) >= 10 and ADMIN_ONLY


def test_every_route_declares_a_policy() -> None:
    missing = [str(r) for r in ROUTES if r.policy is None and r.path not in INFRASTRUCTURE_ROUTES]
    assert not missing, f"routes without an access policy (Public/CurrentUser/AdminUser): {missing}"


def test_a_route_without_a_policy_is_caught() -> None:
    """The classifier itself: a new route that forgets its policy does not slip through."""
    app = FastAPI()

    @app.get("/forgot")
    async def forgot() -> None: ...

    @app.get("/open", dependencies=[Public])
    async def open_route() -> None: ...

    @app.get("/mine")
    async def mine(user: CurrentUser) -> None: ...

    @app.get("/admin")
    async def admin(user: AdminUser) -> None: ...

    @app.get("/sneaky", dependencies=[Depends(lambda: None)])
    async def sneaky() -> None: ...

    policies = {r.path: r.policy for r in routes_of(app)}
    assert policies == {
        "/forgot": None,
        "/open": "public",
        "/mine": "user",
        "/admin": "admin",
        "/sneaky": None,
    }


def _unsigned_token(user_id: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"sub": user_id, "typ": "access", "pwv": "x", "iat": 0, "exp": 4102444800}
    return part({"alg": "none", "typ": "JWT"}) + "." + part(claims) + "."


def bad_tokens(user: User) -> dict[str, str]:
    def token(secret: str, lifetime: timedelta, kind: str = "access") -> str:
        return create_token(
            secret=secret,
            user_id=user.id,
            password_hashed=user.password,
            type="access" if kind == "access" else "refresh",
            lifetime=lifetime,
        )

    return {
        "expired": token(TEST_SECRET, timedelta(minutes=-1)),
        "forged": token("not-our-secret-" + "z" * 40, timedelta(minutes=30)),
        "unsigned": _unsigned_token(user.id),
        "refresh-as-access": token(TEST_SECRET, timedelta(minutes=30), "refresh"),
        "garbage": "not.a.token",
    }


@pytest.fixture
async def people(session: AsyncSession) -> dict[str, str]:
    """Tokens: a plain user's, an admin's, the bad ones, and a deleted user's."""
    user = await make_user(session)
    admin = await make_admin(session)
    ghost = await make_user(session)
    tokens = {"user": access_token(user), "admin": access_token(admin)}
    tokens.update({f"bad:{name}": t for name, t in bad_tokens(user).items()})
    tokens["bad:deleted-user"] = access_token(ghost)
    await session.delete(ghost)
    await session.commit()
    return tokens


def _send(client: httpx.AsyncClient, route: RouteUnderTest, token: str | None) -> Any:
    headers = bearer(token) if token is not None else {}
    return client.request(route.method, route.url, headers=headers)


@pytest.mark.parametrize("route", PROTECTED, ids=str)
async def test_protected_routes_need_a_valid_token(
    client: httpx.AsyncClient, people: dict[str, str], route: RouteUnderTest
) -> None:
    anonymous = await _send(client, route, None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["code"] == "not_authenticated"
    assert anonymous.headers["www-authenticate"] == "Bearer"

    for name, token in people.items():
        if not name.startswith("bad:"):
            continue
        response = await _send(client, route, token)
        assert response.status_code == 401, (name, response.text)

    allowed = await _send(client, route, people["admin" if route.policy == "admin" else "user"])
    assert allowed.status_code not in (401, 403), allowed.text


@pytest.mark.parametrize("route", ADMIN_ONLY, ids=str)
async def test_admin_routes_refuse_a_plain_user(
    client: httpx.AsyncClient, people: dict[str, str], route: RouteUnderTest
) -> None:
    response = await _send(client, route, people["user"])

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"


WRITE_TRANSACTION_ROUTES = [r for r in PROTECTED if r.write_transaction]


def test_the_walk_finds_the_write_transaction_routes() -> None:
    assert {"POST /api/v1/orders", "DELETE /api/v1/admin/users/{user_id}"} <= {
        str(r) for r in WRITE_TRANSACTION_ROUTES
    }


@pytest.mark.parametrize("route", WRITE_TRANSACTION_ROUTES, ids=str)
async def test_a_caller_without_a_valid_token_takes_no_connection(
    session: AsyncSession, database: Database, people: dict[str, str], route: RouteUnderTest
) -> None:
    """The token is checked before the write transaction's connection is taken: anonymous
    or forged requests cannot tie up the pool (a session's routes take theirs lazily)."""
    app = create_app(app_settings(), database=database)
    share_test_session(app, session)
    shared = app.dependency_overrides[get_write_transaction]
    opened: list[str] = []

    async def recorded() -> Any:
        opened.append(str(route))
        async with asynccontextmanager(shared)() as writer:
            yield writer

    app.dependency_overrides[get_write_transaction] = recorded
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for token in (None, people["bad:forged"], people["bad:expired"]):
            assert (await _send(client, route, token)).status_code == 401
        assert opened == []
        allowed = await _send(client, route, people["admin" if route.policy == "admin" else "user"])
        assert allowed.status_code not in (401, 403), allowed.text
        assert opened == [str(route)]
