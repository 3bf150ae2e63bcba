"""Checkout under real concurrent commits: coupon limits, one use per user, idempotent retries."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from coursehub.core.database import Database
from coursehub.coupons import repository as coupons_repository
from coursehub.models import CouponUsage, Order, OrderItem, OrderStatus, PaymentStatus
from coursehub.users import service as users_service
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)
from tests.orders.invariants import assert_order_invariants, count_rows
from tests.queries import hold_coupon_claims, waiting_for_locks

URL = "/api/v1/orders"
BUYERS = 60
MAX_USES = 7
CANCELLED_BEFORE = 5


async def test_a_limited_coupon_gives_exactly_max_uses_among_many_concurrent_checkouts(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        users = [await make_user(session) for _ in range(BUYERS)]
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="FIRST7", value="20", max_uses=MAX_USES)
        # Earlier orders with the coupon, since cancelled: their usages stay but do not
        # count, neither towards maxUses nor against their buyers.
        for user in users[:CANCELLED_BEFORE]:
            await make_order(
                session,
                user=user,
                courses=[course],
                coupon=coupon,
                discount="200.00",
                status=OrderStatus.cancelled,
            )
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
        assert await coupons_repository.count_uses(session, coupon_id) == MAX_USES
        # The refused left nothing: one order, item and usage per success (and the
        # cancelled orders' own).
        rows = MAX_USES + CANCELLED_BEFORE
        assert await count_rows(session) == {
            "orders": rows,
            "items": rows,
            "usages": rows,
            "enrollments": 0,
        }
        discounts = (await session.execute(select(CouponUsage.discount))).scalars().all()
        assert set(discounts) == {Decimal("200.00")}
        await assert_order_invariants(session)


async def test_a_use_given_back_by_a_cancel_goes_to_exactly_one_of_two_racing_checkouts(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """maxUses 2: one use by a completed order, one by a pending order. Two buyers check
    out while that pending order is cancelled: the use it gives back goes to exactly one.

    To make "while" exact, the coupon's claim lock is held (as a checkout claiming one of
    its last uses holds it) until both checkouts queue on it and the cancel has
    committed: each must then count after it has the lock, see the cancel, and see the
    other's use.
    """
    async with committed_db.transaction() as session:
        earlier, holder, first, second = [await make_user(session) for _ in range(4)]
        course = await make_course(session, price="500.00")
        coupon = await make_coupon(session, code="LASTONE", value="10", max_uses=2)
        paid = await make_order(
            session,
            user=earlier,
            courses=[course],
            coupon=coupon,
            discount="50.00",
            status=OrderStatus.completed,
            payment_status=PaymentStatus.paid,
        )
        await make_enrollment(session, user=earlier, course=course, order=paid)
        held = await make_order(
            session, user=holder, courses=[course], coupon=coupon, discount="50.00"
        )
        coupon_id, held_number = coupon.id, held.order_number
        holder_headers = auth_headers(holder)
        buyers = [auth_headers(first), auth_headers(second)]
        body = {"courseIds": [course.id], "couponCode": "LASTONE"}

    async with committed_db.transaction() as lock_session:
        await hold_coupon_claims(lock_session, coupon_id, exclusive=True)
        checkouts = [
            asyncio.create_task(committed_client.post(URL, json=body, headers=h)) for h in buyers
        ]
        await waiting_for_locks(committed_db, 2, what="checkouts")
        cancelled = await committed_client.post(
            f"{URL}/{held_number}/cancel", headers=holder_headers
        )
        assert cancelled.status_code == 200, cancelled.text
    responses = await asyncio.gather(*checkouts)

    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert next(r for r in responses if r.status_code == 409).json()["code"] == "coupon_used_up"
    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == 2
        statuses = (
            (
                await session.execute(
                    select(Order.status)
                    .join(CouponUsage, CouponUsage.order_id == Order.id)
                    .where(CouponUsage.coupon_id == coupon_id)
                )
            )
            .scalars()
            .all()
        )
        # Three usage rows: the completed order's, the cancelled one's (kept), the winner's.
        assert sorted(statuses) == sorted(
            [OrderStatus.completed, OrderStatus.cancelled, OrderStatus.pending]
        )
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


@pytest.mark.parametrize("has_orders", [False, True], ids=["deleted", "anonymised"])
async def test_a_checkout_racing_its_buyers_removal_is_a_401_and_places_nothing(
    committed_client: httpx.AsyncClient, committed_db: Database, has_orders: bool
) -> None:
    """The removal holds the buyer's row (FOR UPDATE) while the checkout, its token already
    checked, queues on it. Removed, the buyer gets what any request after the removal
    gets: 401. Before, a deleted buyer's order failed its foreign key (500), and an
    anonymised one's was placed on the removed account."""
    async with committed_db.transaction() as session:
        buyer = await make_user(session)
        admin = await make_admin(session)
        course = await make_course(session, price="0")  # free: it would complete at once
        if has_orders:
            await make_order(session, user=buyer, courses=[await make_course(session)])
        headers, buyer_id, admin_id, course_id = auth_headers(buyer), buyer.id, admin.id, course.id

    async with committed_db.write_transaction() as removal:
        outcome = await users_service.remove_account(removal, buyer_id, acting_admin_id=admin_id)
        checkout = asyncio.ensure_future(
            committed_client.post(URL, json={"courseIds": [course_id]}, headers=headers)
        )
        await waiting_for_locks(committed_db, 1, what="checkout")
    response = await checkout

    assert outcome.value == ("anonymised" if has_orders else "deleted")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
    async with committed_db.transaction() as session:
        counts = await count_rows(session)
    assert counts["orders"] == (1 if has_orders else 0)
    assert counts["enrollments"] == 0
