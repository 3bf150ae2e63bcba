"""Sign-in, the sign-up checks and the admins' user list are served by indexes: with
20,000 users (legacy mixed-case ones among them), EXPLAIN shows no sequential scan of
the User table for any of their queries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.core.models import utcnow
from coursehub.models import Role
from coursehub.users import repository
from tests.queries import captured, explain, explain_generic, sequential_scans

USERS = 20_000

BULK_INSERT = text(
    """
    INSERT INTO "User" (id, email, username, password, role, "createdAt", "updatedAt")
    SELECT gen_random_uuid()::text,
           CASE WHEN i % 3 = 0 THEN 'Legacy' || i || '@Example.COM' ELSE 'user' || i || '@example.com' END,
           CASE WHEN i % 3 = 0 THEN 'Legacy' || i ELSE 'user' || i END,
           'x',
           (CASE WHEN i % 1000 = 0 THEN 'admin' ELSE 'user' END)::"Role",
           now() - make_interval(secs => i),
           now()
    FROM generate_series(1, :users) AS i
    """
)


@pytest.fixture
async def many_users(committed_db: Database) -> AsyncIterator[Database]:
    async with committed_db.transaction() as session:
        await session.execute(BULK_INSERT, {"users": USERS})
    async with committed_db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql('VACUUM ANALYZE "User"')
    yield committed_db


Query = Callable[[AsyncSession], Awaitable[Any]]
QUERIES: dict[str, Query] = {
    "login by email": lambda s: repository.find_user_by_login(s, "LEGACY300@example.com"),
    "login by username": lambda s: repository.find_user_by_login(s, "user301"),
    "taken check": lambda s: repository.taken_fields(
        s, email="user302@example.com", username="legacy303"
    ),
    "list": lambda s: repository.list_users(s, limit=21),
    "list admins": lambda s: repository.list_users(s, role=Role.admin, limit=21),
    "list users": lambda s: repository.list_users(s, role=Role.user, limit=21),
    "list by prefix": lambda s: repository.list_users(s, prefix="LEGACY12", limit=21),
    "list by prefix and role": lambda s: repository.list_users(
        s, prefix="user1", role=Role.user, limit=21
    ),
    "list, page 2": lambda s: repository.list_users(
        s, after=(utcnow() - timedelta(hours=1), "f"), limit=21
    ),
    "list admins, page 2": lambda s: repository.list_users(
        s, role=Role.admin, after=(utcnow() - timedelta(hours=1), "f"), limit=21
    ),
}


@pytest.mark.parametrize("name", QUERIES)
async def test_no_user_query_scans_the_table(many_users: Database, name: str) -> None:
    async with many_users.transaction() as session:
        with captured(many_users.engine) as log:
            await QUERIES[name](session)

    assert log.count == 1
    plan = await explain(many_users.engine, *log.executed[0])
    assert not sequential_scans(plan, "User"), json.dumps(plan, indent=1)


@pytest.mark.parametrize(
    ("email", "username"),
    [("user302@example.com", "legacy303"), ("user302@example.com", None), (None, "legacy303")],
)
async def test_the_taken_check_uses_the_indexes_in_its_generic_plan(
    many_users: Database, email: str | None, username: str | None
) -> None:
    """One prepared statement serves sign-up (both fields) and account changes (either):
    its generic plan, which it settles on, must not scan the table for any of them."""
    async with many_users.transaction() as session:
        with captured(many_users.engine) as log:
            await repository.taken_fields(session, email=email, username=username)
    plan = await explain_generic(many_users.engine, *log.executed[0])
    assert not sequential_scans(plan, "User"), json.dumps(plan, indent=1)


async def test_prefix_search_finds_legacy_mixed_case_rows(many_users: Database) -> None:
    async with many_users.transaction() as session:
        rows = await repository.list_users(session, prefix="legacy300", limit=100)

    assert {r.username for r in rows} >= {"Legacy300", "Legacy3000"}
    assert all(r.username.lower().startswith("legacy300") for r in rows)
