"""Prisma's `@updatedAt` and `@default(uuid())` are the application's job, not the
database's: `updatedAt` moves on every kind of update the store makes (an ORM flush, a
bulk `update()` statement, the INSERT … ON CONFLICT DO UPDATE upserts, which bypass
`onupdate`), and ids made through the API are version-4 UUIDs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.enrollments import repository as enrollments
from coursehub.models import EnrollmentStatus, User
from coursehub.users import repository as users
from tests.factories import (
    auth_headers,
    make_admin,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)

LONG_AGO = datetime(2001, 1, 1)


async def _age(session: AsyncSession, table: str, row_id: str) -> None:
    """Put the row's updatedAt far in the past, behind the ORM's back (raw SQL has no
    `onupdate`), so any move to "now" is unmistakable without sleeping."""
    await session.execute(
        text(f'UPDATE "{table}" SET "updatedAt" = :then WHERE "id" = :id'),
        {"then": LONG_AGO, "id": row_id},
    )


async def _updated_at(session: AsyncSession, table: str, row_id: str) -> datetime:
    value: datetime = (
        await session.execute(
            text(f'SELECT "updatedAt" FROM "{table}" WHERE "id" = :id'), {"id": row_id}
        )
    ).scalar_one()
    return value.replace(tzinfo=UTC)


async def _moves_to_now(
    session: AsyncSession, table: str, row_id: str, change: Callable[[], Awaitable[object]]
) -> None:
    await _age(session, table, row_id)
    before = datetime.now(UTC) - timedelta(seconds=1)

    await change()
    await session.flush()

    moved = await _updated_at(session, table, row_id)
    assert before <= moved <= datetime.now(UTC) + timedelta(seconds=1), (table, moved)


async def test_an_orm_update_moves_updated_at(session: AsyncSession) -> None:
    user = await make_user(session)

    async def rename() -> None:
        # Loaded afresh, so the flush is a real UPDATE of a persistent object.
        await session.refresh(user)
        user.username = f"renamed-{user.username}"

    await _moves_to_now(session, "User", user.id, rename)


async def test_a_bulk_update_statement_moves_updated_at(session: AsyncSession) -> None:
    user = await make_user(session)

    async def bulk() -> None:
        await session.execute(
            update(User)
            .where(User.id == user.id)
            .values(username=f"bulk-{user.username}")
            .execution_options(synchronize_session=False)
        )

    await _moves_to_now(session, "User", user.id, bulk)


async def test_a_bulk_revoke_of_an_orders_enrollments_moves_updated_at(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    course = await make_course(session)
    order = await make_order(session, user=user, courses=[course])
    enrollment = await make_enrollment(session, user=user, course=course, order=order)

    async def revoke() -> None:
        assert await enrollments.revoke_enrollments_of_order(session, order_id=order.id) == 1

    await _moves_to_now(session, "CourseEnrollment", enrollment.id, revoke)


async def test_the_profile_upsert_moves_updated_at_when_it_updates(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    profile = await users.put_profile(session, user_id=user.id, fields={"first_name": "Ada"})

    async def replace() -> None:
        again = await users.put_profile(session, user_id=user.id, fields={"first_name": "Grace"})
        assert again.id == profile.id  # the conflict path: an update, not a second row

    await _moves_to_now(session, "UserProfile", profile.id, replace)


async def test_the_preferences_upsert_moves_updated_at_when_it_updates(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    preferences = await users.patch_preferences(session, user_id=user.id, changes={"theme": "dark"})

    async def change() -> None:
        again = await users.patch_preferences(
            session, user_id=user.id, changes={"notifications": False}
        )
        assert again.id == preferences.id

    await _moves_to_now(session, "UserPreference", preferences.id, change)


async def test_the_enrollment_upserts_move_updated_at_when_they_reactivate(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    course = await make_course(session)
    other = await make_course(session)
    order = await make_order(session, user=user, courses=[course])
    revoked = await make_enrollment(
        session, user=user, course=course, status=EnrollmentStatus.revoked
    )
    also_revoked = await make_enrollment(
        session, user=user, course=other, status=EnrollmentStatus.revoked
    )

    async def reactivate_by_order() -> None:
        await enrollments.upsert_active_enrollments(
            session, user_id=user.id, course_ids=[course.id], order_id=order.id
        )

    async def grant() -> None:
        assert await enrollments.grant_enrollment_without_order(
            session, user_id=user.id, course_id=other.id
        )

    await _moves_to_now(session, "CourseEnrollment", revoked.id, reactivate_by_order)
    await _moves_to_now(session, "CourseEnrollment", also_revoked.id, grant)
    statuses = (
        await session.execute(
            text('SELECT "status" FROM "CourseEnrollment" WHERE "userId" = :u'), {"u": user.id}
        )
    ).scalars()
    assert set(statuses) == {"active"}


def _is_uuid4(value: str) -> bool:
    parsed = uuid.UUID(value)
    return parsed.version == 4 and str(parsed) == value


async def test_ids_made_through_the_api_are_uuid4(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "ids@example.com", "username": "ids", "password": "long-enough"},
    )
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["id"]
    user = await session.get(User, user_id)
    assert user is not None
    headers = auth_headers(user)
    profile = await client.put("/api/v1/me/profile", json={"firstName": "Ida"}, headers=headers)
    assert profile.status_code == 200, profile.text
    preferences = await client.patch(
        "/api/v1/me/preferences", json={"theme": "dark"}, headers=headers
    )
    assert preferences.status_code == 200, preferences.text
    admin = await make_admin(session)
    course = await client.post(
        "/api/v1/admin/courses",
        json={
            "title": "Identifiers in Practice",
            "price": "499.00",
            "category": "programming",
            "level": "beginner",
            "duration": 60,
        },
        headers=auth_headers(admin),
    )
    assert course.status_code == 201, course.text

    ids = [user_id, course.json()["id"]]
    for table in ("UserProfile", "UserPreference"):
        ids.append(
            (
                await session.execute(
                    text(f'SELECT "id" FROM "{table}" WHERE "userId" = :u'), {"u": user_id}
                )
            ).scalar_one()
        )
    assert all(_is_uuid4(value) for value in ids), ids
    assert len(set(ids)) == len(ids)
