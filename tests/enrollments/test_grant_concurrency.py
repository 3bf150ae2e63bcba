"""An admin's grant racing the deletion of its user or course, with real commits from
separate connections.

The grant reads the user and the course FOR KEY SHARE in its own transaction: a deletion in
flight is waited for and then seen (404, nothing written), and one that starts later waits
for the grant. Without the lock, the grant's insert waited in its foreign-key check and
then failed with a ForeignKeyViolation (a 500).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from coursehub.catalog import repository as catalog_repository
from coursehub.core.database import Database
from coursehub.models import CourseEnrollment
from coursehub.users import repository as users_repository
from tests.factories import auth_headers, make_admin, make_course, make_user
from tests.queries import waiting_for_locks

pytestmark = pytest.mark.committing


def admin_url(user_id: str) -> str:
    return f"/api/v1/admin/users/{user_id}/enrollments"


async def enrollment_count(database: Database) -> int:
    async with database.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(CourseEnrollment))
    return int(count or 0)


@pytest.mark.parametrize(
    ("victim", "code"), [("user", "user_not_found"), ("course", "course_not_found")]
)
async def test_a_grant_racing_a_deletion_is_404_once_the_deletion_commits(
    committed_client: httpx.AsyncClient, committed_db: Database, victim: str, code: str
) -> None:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        learner = await make_user(session)
        course = await make_course(session)

    async with committed_db.transaction() as deleter:
        # Another admin's deletion, in flight: the row is gone but not yet committed.
        if victim == "user":
            assert await users_repository.delete_user(deleter, user_id=learner.id)
        else:
            assert await catalog_repository.delete_course(deleter, course.id)
        grant = asyncio.create_task(
            committed_client.post(
                admin_url(learner.id), json={"courseId": course.id}, headers=auth_headers(admin)
            )
        )
        await waiting_for_locks(committed_db, 1, what="grants")
        assert not grant.done()
    response = await grant

    assert response.status_code == 404, response.text
    assert response.json()["code"] == code
    assert await enrollment_count(committed_db) == 0


@pytest.mark.parametrize("victim", ["user", "course"])
async def test_a_grant_racing_a_deletion_that_rolls_back_is_granted(
    committed_client: httpx.AsyncClient, committed_db: Database, victim: str
) -> None:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        learner = await make_user(session)
        course = await make_course(session)

    async with committed_db.sessionmaker() as deleter:  # begun by its first statement
        if victim == "user":
            assert await users_repository.delete_user(deleter, user_id=learner.id)
        else:
            assert await catalog_repository.delete_course(deleter, course.id)
        grant = asyncio.create_task(
            committed_client.post(
                admin_url(learner.id),
                json={"courseId": course.id},
                headers=auth_headers(admin),
            )
        )
        await waiting_for_locks(committed_db, 1, what="grants")
        await deleter.rollback()
    response = await grant

    assert response.status_code == 201, response.text
    assert response.json()["userId"] == learner.id
    assert response.json()["courseId"] == course.id
    assert await enrollment_count(committed_db) == 1
