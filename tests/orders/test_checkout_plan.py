"""Checkout's courses (and coupon) are planned once per connection, not at every checkout.

Given the ids' array itself, PostgreSQL's custom plans see its real length while the
generic plan assumes ten elements: the generic one always looked dearer and the
statement was re-planned at every execution (~150 µs of the server's CPU a checkout).
As a subquery's result (orders/repository.py `_COURSE_IDS_UNSEEN`) the array is unknown to
both plans: after its first five executions on a connection the generic plan is kept,
and it is the right one, an index scan of the primary key.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.orders import repository
from tests.factories import make_coupon, make_user
from tests.queries import BULK_COURSES, PLANS, explain_generic_in, plan_nodes, sequential_scans

COURSES = 2_000


@pytest.mark.parametrize("coupon_code", [None, "TENOFF"], ids=["no coupon", "with a coupon"])
async def test_checkouts_courses_are_planned_once_and_found_by_primary_key(
    session: AsyncSession, coupon_code: str | None
) -> None:
    admin = await make_user(session)
    buyer = await make_user(session)
    await make_coupon(session, code="TENOFF")
    await session.execute(BULK_COURSES, {"admin": admin.id, "courses": COURSES})
    connection = await session.connection()
    # Every table it reads (tests/bench/test_floor.py says why).
    await connection.exec_driver_sql(
        'ANALYZE "Course", "CourseEnrollment", "Order", "OrderItem", "Coupon", "CouponUsage"'
    )
    statement = (
        repository._CHECKOUT_COURSES_SQL
        if coupon_code is None
        else repository._CHECKOUT_COURSES_AND_COUPON_SQL
    )
    sql = statement.sql

    for n in range(1, 9):  # enough for the plan cache to settle on a generic plan
        pair = [f"course-{n}", f"course-{n + 1}"]
        loaded = await repository.load_courses_for_checkout(
            session, user_id=buyer.id, course_ids=pair, coupon_code=coupon_code
        )
        assert sorted(row.course.id for row in loaded.courses) == sorted(pair)  # published: n % 10
        assert (loaded.coupon is not None) == (coupon_code is not None)
    # Four executions, all on the generic plan. Autovacuum analyzing a table the statement
    # reads (the committed tests' rows) invalidates the plan, and the next execution is
    # then planned afresh once: a window it fell in is measured again.
    for _ in range(3):
        before = (await session.execute(PLANS, {"sql": sql})).one()
        for n in range(11, 15):
            await repository.load_courses_for_checkout(
                session, user_id=buyer.id, course_ids=[f"course-{n}"], coupon_code=coupon_code
            )
        generic, custom = (await session.execute(PLANS, {"sql": sql})).one()
        if (generic - before[0], custom - before[1]) == (4, 0):
            break
    assert (generic - before[0], custom - before[1]) == (4, 0), "re-planned each time"

    arguments = [
        "{course-1,course-2}" if isinstance(value, list) else value  # an array's literal
        for value in statement.arguments(
            {"user_id": buyer.id, "course_ids": ["course-1", "course-2"], "code": "TENOFF"}
        )
    ]
    plan = await explain_generic_in(connection, sql, arguments)
    used = [node.get("Index Name") for node in plan_nodes(plan)]
    assert "Course_pkey" in used, json.dumps(plan, indent=1)
    assert not sequential_scans(plan, "Course")
