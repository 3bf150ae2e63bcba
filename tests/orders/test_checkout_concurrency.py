"""Checkout under real concurrent commits: coupon limits, one use per user, idempotent retries."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select

from coursehub.core.database import Database
from coursehub.models import CouponUsage, Order, OrderItem
from tests.factories import auth_headers, make_coupon, make_course, make_user
from tests.orders.invariants import assert_order_invariants, count_rows

URL = "/api/v1/orders"
BUYERS = 60
MAX_USES = 7


async def test_a_limited_coupon_gives_exactly_max_uses_among_many_concurrent_checkouts(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        users = [await make_user(session) for _ in range(BUYERS)]
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="FIRST7", value="20", max_uses=MAX_USES)
        headers = [auth_headers(user) for user in users]
        course_id, coupon_id = course.id, coupon.id

    responses = await asyncio.gather(
        *(
            committed_client.post(
                URL, json={"courseIds": [course_id], "couponCode": "first7"}, headers=h
            )
            for h in headers
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == MAX_USES, [r.text for r in responses if r.status_code >= 500]
    refused = [r for r in responses if r.status_code != 201]
    assert len(refused) == BUYERS - MAX_USES
    assert {(r.status_code, r.json()["code"]) for r in refused} == {(409, "coupon_used_up")}
    async with committed_db.transaction() as session:
        uses = await session.scalar(select(func.count()).where(CouponUsage.coupon_id == coupon_id))
        assert uses == MAX_USES
        # The refused left nothing: one order and one item per success.
        assert await count_rows(session) == {
            "orders": MAX_USES,
            "items": MAX_USES,
            "usages": MAX_USES,
            "enrollments": 0,
        }
        discounts = (await session.execute(select(CouponUsage.discount))).scalars().all()
        assert set(discounts) == {Decimal("200.00")}
        await assert_order_invariants(session)


async def test_one_user_racing_an_unlimited_coupon_uses_it_once(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
        courses = [await make_course(session) for _ in range(10)]
        await make_coupon(session, code="ONCEEACH")
        headers = auth_headers(user)
        ids = [c.id for c in courses]

    # Ten different orders (no Idempotency-Key), each trying the same coupon at once.
    responses = await asyncio.gather(
        *(
            committed_client.post(
                URL, json={"courseIds": [course_id], "couponCode": "ONCEEACH"}, headers=headers
            )
            for course_id in ids
        )
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"coupon_already_used"}
    async with committed_db.transaction() as session:
        assert await count_rows(session) == {
            "orders": 1,
            "items": 1,
            "usages": 1,
            "enrollments": 0,
        }


async def test_one_user_racing_for_the_same_course_gets_one_pending_order(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
        course = await make_course(session)
        headers, course_id = auth_headers(user), course.id

    responses = await asyncio.gather(
        *(
            committed_client.post(URL, json={"courseIds": [course_id]}, headers=headers)
            for _ in range(8)
        )
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    number = next(r.json()["orderNumber"] for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] == "course_in_pending_order"
            assert r.json()["orderNumber"] == number


async def test_concurrent_retries_with_one_idempotency_key_make_one_order(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
        courses = [await make_course(session) for _ in range(3)]
        await make_coupon(session, code="RETRY", max_uses=100)
        headers = {**auth_headers(user), "Idempotency-Key": "pay-click-42"}
        body: dict[str, Any] = {"courseIds": [c.id for c in courses], "couponCode": "RETRY"}

    responses = await asyncio.gather(
        *(committed_client.post(URL, json=body, headers=headers) for _ in range(12))
    )

    assert sorted(r.status_code for r in responses) == [200] * 11 + [201]
    assert len({r.json()["orderNumber"] for r in responses}) == 1
    assert all(r.json() == responses[0].json() for r in responses)
    async with committed_db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
        assert await session.scalar(select(func.count()).select_from(OrderItem)) == 3
        assert await session.scalar(select(func.count()).select_from(CouponUsage)) == 1
        await assert_order_invariants(session)
