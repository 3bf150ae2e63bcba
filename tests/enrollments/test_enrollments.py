"""Enrollments: GET /me/enrollments, PATCH /me/enrollments/{courseId}, and the admins' grant,
revoke and list under /admin/users/{userId}/enrollments.

Setup is committed (a savepoint release inside the test's transaction) so a request that
fails, and rolls back its own work, does not take the setup with it.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import utcnow
from coursehub.models import (
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PaymentStatus,
)
from tests.factories import (
    auth_headers,
    make_admin,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)
from tests.orders.invariants import assert_order_invariants
from tests.payments.helpers import commit_setup, deliver, event

ME = "/api/v1/me/enrollments"


def admin_url(user_id: str) -> str:
    return f"/api/v1/admin/users/{user_id}/enrollments"


async def stored(session: AsyncSession, user_id: str, course_id: str) -> CourseEnrollment | None:
    statement = (
        select(CourseEnrollment)
        .where(CourseEnrollment.user_id == user_id, CourseEnrollment.course_id == course_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def test_my_enrollments_lists_only_my_active_ones_with_their_courses(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me = await make_user(session)
    someone = await make_user(session)
    python = await make_course(session, title="Python", slug="python-basics")
    rust = await make_course(session, title="Rust")
    revoked_course = await make_course(session)
    await make_enrollment(session, user=me, course=python, progress=40)
    await make_enrollment(session, user=me, course=rust)
    await make_enrollment(session, user=me, course=revoked_course, status=EnrollmentStatus.revoked)
    await make_enrollment(session, user=someone, course=python)
    await commit_setup(session)

    response = await client.get(ME, headers=auth_headers(me))

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["courseId"] for item in items} == {python.id, rust.id}
    assert all(item["userId"] == me.id and item["status"] == "active" for item in items)
    first_python = next(item for item in items if item["courseId"] == python.id)
    assert first_python["course"]["title"] == "Python"
    assert first_python["course"]["slug"] == "python-basics"
    assert first_python["progress"] == 40
    assert first_python["orderId"] is None
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata"])
async def test_my_enrollments_page_by_keyset_newest_first_without_repeats(
    client: httpx.AsyncClient, session: AsyncSession, time_zone: str
) -> None:
    """Whatever the session's TimeZone (the store sets UTC; an operator's role setting may
    differ): the cursor's time compares as the stored one."""
    me = await make_user(session)
    base = utcnow() - timedelta(days=1)
    ids = []
    for n in range(5):
        enrollment = await make_enrollment(session, user=me, course=await make_course(session))
        # Two share a timestamp: the id breaks the tie, so none is skipped or repeated.
        enrollment.created_at = base + timedelta(minutes=min(n, 3))
        ids.append(enrollment.id)
    await session.execute(text(f"SET LOCAL TIME ZONE '{time_zone}'"))
    await commit_setup(session)
    headers = auth_headers(me)

    seen: list[str] = []
    cursor = None
    pages = 0
    while pages < 10:  # a cursor that does not move on must fail the test, not hang it
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get(ME, params=params, headers=headers)).json()
        seen.extend(item["id"] for item in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    created = {
        e.id: e.created_at
        for e in (await session.execute(select(CourseEnrollment))).scalars()
        if e.id in ids
    }
    assert [created[i] for i in seen] == sorted(created.values(), reverse=True)


async def test_a_cursor_from_another_list_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    learner = await make_user(session)
    for _ in range(3):
        await make_enrollment(session, user=learner, course=await make_course(session))
    await commit_setup(session)
    admin_page = await client.get(
        admin_url(learner.id), params={"limit": 1}, headers=auth_headers(admin)
    )
    cursor = admin_page.json()["next_cursor"]
    assert cursor

    response = await client.get(ME, params={"cursor": cursor}, headers=auth_headers(learner))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_my_enrollments_need_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get(ME)

    assert response.status_code == 401


async def test_progress_100_sets_completed_at_and_lower_clears_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me = await make_user(session)
    course = await make_course(session)
    await make_enrollment(session, user=me, course=course, progress=10)
    await commit_setup(session)
    headers = auth_headers(me)

    halfway = await client.patch(f"{ME}/{course.id}", json={"progress": 55}, headers=headers)
    assert halfway.status_code == 200, halfway.text
    assert halfway.json()["progress"] == 55
    assert halfway.json()["completedAt"] is None

    done = await client.patch(f"{ME}/{course.id}", json={"progress": 100}, headers=headers)
    assert done.status_code == 200
    completed_at = done.json()["completedAt"]
    assert completed_at is not None
    row = await stored(session, me.id, course.id)
    assert row is not None and row.progress == 100 and row.completed_at is not None

    again = await client.patch(f"{ME}/{course.id}", json={"progress": 100}, headers=headers)
    assert again.json()["completedAt"] == completed_at  # completing twice keeps the first time

    back = await client.patch(f"{ME}/{course.id}", json={"progress": 99}, headers=headers)
    assert back.json()["completedAt"] is None
    row = await stored(session, me.id, course.id)
    assert row is not None and row.progress == 99 and row.completed_at is None


async def test_progress_must_be_a_whole_percent(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me = await make_user(session)
    course = await make_course(session)
    await make_enrollment(session, user=me, course=course, progress=30)
    await commit_setup(session)
    headers = auth_headers(me)

    for bad in (-1, 101, 50.5, "50", True, None):
        response = await client.patch(f"{ME}/{course.id}", json={"progress": bad}, headers=headers)
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == "progress"
    missing = await client.patch(f"{ME}/{course.id}", json={}, headers=headers)
    assert missing.status_code == 422

    row = await stored(session, me.id, course.id)
    assert row is not None and row.progress == 30


async def test_progress_on_a_course_i_do_not_hold_is_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me = await make_user(session)
    other = await make_user(session)
    theirs = await make_course(session)
    revoked = await make_course(session)
    await make_enrollment(session, user=other, course=theirs)
    await make_enrollment(session, user=me, course=revoked, status=EnrollmentStatus.revoked)
    await commit_setup(session)
    headers = auth_headers(me)

    for course_id in (theirs.id, revoked.id, "no-such-course"):
        response = await client.patch(f"{ME}/{course_id}", json={"progress": 5}, headers=headers)
        assert response.status_code == 404
        assert response.json()["code"] == "enrollment_not_found"
    row = await stored(session, other.id, theirs.id)
    assert row is not None and row.progress == 0


async def test_admin_grants_an_enrollment_without_an_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    learner = await make_user(session)
    course = await make_course(session, published=False)  # admins may grant drafts too
    await commit_setup(session)

    response = await client.post(
        admin_url(learner.id), json={"courseId": course.id}, headers=auth_headers(admin)
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["orderId"] is None
    assert body["status"] == "active"
    assert body["course"]["id"] == course.id
    row = await stored(session, learner.id, course.id)
    assert row is not None and row.status == EnrollmentStatus.active and row.order_id is None


async def test_granting_an_active_enrollment_again_is_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    learner = await make_user(session)
    course = await make_course(session)
    order = await make_order(
        session,
        user=learner,
        courses=[course],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
    )
    await make_enrollment(session, user=learner, course=course, order=order, progress=70)
    await commit_setup(session)

    response = await client.post(
        admin_url(learner.id), json={"courseId": course.id}, headers=auth_headers(admin)
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_enrolled"
    row = await stored(session, learner.id, course.id)
    assert row is not None and row.order_id == order.id and row.progress == 70


async def test_granting_a_revoked_enrollment_reactivates_it_keeping_progress(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    learner = await make_user(session)
    course = await make_course(session)
    order = await make_order(
        session,
        user=learner,
        courses=[course],
        status=OrderStatus.refunded,
        payment_status=PaymentStatus.refunded,
    )
    await make_enrollment(
        session,
        user=learner,
        course=course,
        order=order,
        status=EnrollmentStatus.revoked,
        progress=35,
    )
    await commit_setup(session)

    response = await client.post(
        admin_url(learner.id), json={"courseId": course.id}, headers=auth_headers(admin)
    )

    assert response.status_code == 201
    row = await stored(session, learner.id, course.id)
    assert row is not None
    assert row.status == EnrollmentStatus.active
    assert row.order_id is None  # now held by the admin's grant, not the refunded order
    assert row.progress == 35
    count = await session.scalar(
        select(func.count())
        .select_from(CourseEnrollment)
        .where(CourseEnrollment.user_id == learner.id)
    )
    assert count == 1


async def test_grant_for_an_unknown_user_or_course_is_404_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    learner = await make_user(session)
    course = await make_course(session)
    await commit_setup(session)
    headers = auth_headers(admin)

    no_user = await client.post(admin_url("nobody"), json={"courseId": course.id}, headers=headers)
    no_course = await client.post(
        admin_url(learner.id), json={"courseId": "nothing"}, headers=headers
    )

    assert no_user.status_code == 404 and no_user.json()["code"] == "user_not_found"
    assert no_course.status_code == 404 and no_course.json()["code"] == "course_not_found"
    assert await session.scalar(select(func.count()).select_from(CourseEnrollment)) == 0


async def test_admin_revokes_and_the_learner_no_longer_sees_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    learner = await make_user(session)
    course = await make_course(session)
    await make_enrollment(session, user=learner, course=course, progress=20)
    await commit_setup(session)
    headers = auth_headers(admin)

    response = await client.post(f"{admin_url(learner.id)}/{course.id}/revoke", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    assert response.json()["progress"] == 20
    mine = await client.get(ME, headers=auth_headers(learner))
    assert mine.json()["items"] == []
    everything = await client.get(admin_url(learner.id), headers=headers)
    assert [item["status"] for item in everything.json()["items"]] == ["revoked"]
    only_active = await client.get(
        admin_url(learner.id), params={"status": "active"}, headers=headers
    )
    assert only_active.json()["items"] == []

    again = await client.post(f"{admin_url(learner.id)}/{course.id}/revoke", headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "enrollment_not_active"
    missing = await client.post(f"{admin_url(learner.id)}/nothing/revoke", headers=headers)
    assert missing.status_code == 404


async def test_enrollment_admin_routes_need_the_admin_role(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    learner = await make_user(session)
    course = await make_course(session)
    await commit_setup(session)
    headers = auth_headers(learner)

    grant = await client.post(admin_url(learner.id), json={"courseId": course.id}, headers=headers)
    listing = await client.get(admin_url(learner.id), headers=headers)

    assert grant.status_code == 403
    assert listing.status_code == 403
    assert await stored(session, learner.id, course.id) is None


async def test_a_grant_while_the_order_is_pending_is_taken_over_by_the_paid_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Checkout, then an admin grants the same course, then the capture arrives: the paid
    order must own an enrollment of its own (the invariant), and its refund revoke it."""
    admin = await make_admin(session)
    buyer = await make_user(session)
    course = await make_course(session, price="799.00")
    await commit_setup(session)

    checkout = await client.post(
        "/api/v1/orders", json={"courseIds": [course.id]}, headers=auth_headers(buyer)
    )
    assert checkout.status_code == 201, checkout.text
    order_number = checkout.json()["orderNumber"]
    granted = await client.post(
        admin_url(buyer.id), json={"courseId": course.id}, headers=auth_headers(admin)
    )
    assert granted.status_code == 201, granted.text
    progress = await client.patch(
        f"{ME}/{course.id}", json={"progress": 100}, headers=auth_headers(buyer)
    )
    assert progress.status_code == 200, progress.text
    order = (
        await session.execute(
            select(Order)
            .where(Order.order_number == order_number)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()

    captured = await deliver(client, event(order))

    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "completed"
    row = await stored(session, buyer.id, course.id)
    assert row is not None
    assert row.status == EnrollmentStatus.active
    assert row.order_id == order.id  # the paying order's now, not the grant's
    assert row.progress == 100 and row.completed_at is not None  # the learner's work kept
    await assert_order_invariants(session)

    refunded = await client.post(
        f"/api/v1/admin/orders/{order_number}/refund",
        json={"reason": "duplicate access"},
        headers=auth_headers(admin),
    )

    assert refunded.status_code == 200, refunded.text
    row = await stored(session, buyer.id, course.id)
    assert row is not None and row.status == EnrollmentStatus.revoked
    await assert_order_invariants(session)
