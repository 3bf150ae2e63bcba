"""An admin's PATCH /admin/courses/{id} racing another admin's DELETE or PATCH of the same
course, with real commits from separate connections.

The PATCH reads the course FOR UPDATE: a deletion in flight is waited for and then seen
(404 course_not_found), where a plain read found the row and the UPDATE then matched
nothing (SQLAlchemy's StaleDataError, a 500); a concurrent change is waited for and then
read, so the response never shows fields older than the row it wrote. The lock is FOR NO
KEY UPDATE, so a checkout or grant of the course in flight does not hold the PATCH up.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import update

from coursehub.catalog import repository
from coursehub.core.database import Database
from coursehub.models import Course
from tests.factories import auth_headers, make_admin, make_course, make_enrollment, make_user
from tests.queries import waiting_for_locks

pytestmark = pytest.mark.committing

URL = "/api/v1/admin/courses"


async def test_a_patch_racing_a_deletion_is_404_once_the_deletion_commits(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        course = await make_course(session, title="Doomed")

    async with committed_db.transaction() as deleter:
        # Another admin's DELETE, in flight: the row is gone but not yet committed.
        assert await repository.delete_course(deleter, course.id)
        patch = asyncio.create_task(
            committed_client.patch(
                f"{URL}/{course.id}", json={"title": "Renamed"}, headers=auth_headers(admin)
            )
        )
        await waiting_for_locks(committed_db, 1, what="PATCHes")
        assert not patch.done()
    response = await patch

    assert response.status_code == 404, response.text
    assert response.json()["code"] == "course_not_found"
    async with committed_db.transaction() as session:
        assert await session.get(Course, course.id) is None


async def test_a_patch_racing_a_deletion_that_rolls_back_is_applied(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        course = await make_course(session, title="Spared")

    async with committed_db.sessionmaker() as deleter:  # begun by its first statement
        assert await repository.delete_course(deleter, course.id)
        patch = asyncio.create_task(
            committed_client.patch(
                f"{URL}/{course.id}", json={"title": "Renamed"}, headers=auth_headers(admin)
            )
        )
        await waiting_for_locks(committed_db, 1, what="PATCHes")
        await deleter.rollback()
    response = await patch

    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Renamed"


async def test_a_patch_racing_another_patch_answers_with_both_changes(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        course = await make_course(session, title="Before", price="499.00")

    async with committed_db.transaction() as other:
        # Another admin's change of the price, in flight.
        await other.execute(
            update(Course).where(Course.id == course.id).values(price=Decimal("999.00"))
        )
        patch = asyncio.create_task(
            committed_client.patch(
                f"{URL}/{course.id}", json={"title": "After"}, headers=auth_headers(admin)
            )
        )
        await waiting_for_locks(committed_db, 1, what="PATCHes")
        assert not patch.done()
    response = await patch

    assert response.status_code == 200, response.text
    # The row as this PATCH left it: its title, and the price committed before it.
    assert response.json()["title"] == "After"
    assert response.json()["price"] == "999.00"
    async with committed_db.transaction() as session:
        stored = await session.get(Course, course.id)
        assert stored is not None
        assert (stored.title, stored.price) == ("After", Decimal("999.00"))


async def test_a_patch_does_not_wait_for_an_enrollment_of_the_course_in_flight(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """A grant's or checkout's insert holds FOR KEY SHARE on the course row (its
    foreign-key check) until it commits: the PATCH's lock must not conflict with it."""
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        learner = await make_user(session)
        course = await make_course(session, title="Popular")

    async with committed_db.transaction() as enrolling:
        await make_enrollment(enrolling, user=learner, course=course)
        response = await asyncio.wait_for(
            committed_client.patch(
                f"{URL}/{course.id}", json={"title": "Still popular"}, headers=auth_headers(admin)
            ),
            timeout=5,
        )

    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Still popular"
