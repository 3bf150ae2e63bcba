"""Webhook deliveries racing each other, with real commits from separate connections.

The order row lock (`SELECT … FOR UPDATE`) must make concurrent duplicates and
conflicting events run one after the other: exactly one of them has an effect.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from coursehub.core.database import Database
from coursehub.models import (
    CouponUsage,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PaymentStatus,
    User,
)
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_order,
    make_user,
)
from tests.payments.helpers import deliver, event

pytestmark = pytest.mark.committing

DUPLICATES = 12


async def committed_order(database: Database, *, with_coupon: bool = False) -> Order:
    async with database.transaction() as session:
        buyer = await make_user(session)
        courses = [
            await make_course(session, price="800.00"),
            await make_course(session, price="200.00"),
        ]
        coupon = await make_coupon(session, value="10") if with_coupon else None
        order = await make_order(
            session,
            user=buyer,
            courses=courses,
            coupon=coupon,
            discount=Decimal("100.00") if coupon else Decimal("0"),
        )
    return order


async def state(database: Database, order: Order) -> tuple[Order, list[CourseEnrollment], int]:
    async with database.transaction() as session:
        stored = (await session.execute(select(Order).where(Order.id == order.id))).scalar_one()
        enrollments = list(
            (
                await session.execute(
                    select(CourseEnrollment).where(CourseEnrollment.user_id == order.user_id)
                )
            ).scalars()
        )
        usages = await session.scalar(
            select(func.count()).select_from(CouponUsage).where(CouponUsage.order_id == order.id)
        )
    return stored, enrollments, int(usages or 0)


async def test_concurrent_duplicate_captures_have_exactly_one_effect(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db)

    responses = await asyncio.gather(
        *(deliver(committed_client, event(order, payment_id="pay_dup")) for _ in range(DUPLICATES))
    )

    assert [r.status_code for r in responses] == [200] * DUPLICATES
    outcomes = Counter(r.json()["outcome"] for r in responses)
    assert outcomes == {"captured": 1, "already_captured": DUPLICATES - 1}
    stored, enrollments, _ = await state(committed_db, order)
    assert stored.status == OrderStatus.completed
    assert stored.payment_status == PaymentStatus.paid
    assert len(enrollments) == 2
    assert {e.order_id for e in enrollments} == {order.id}


async def test_a_capture_racing_failures_leaves_one_consistent_outcome(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db, with_coupon=True)
    deliveries = [
        deliver(committed_client, event(order, "payment.failed", payment_id=f"pay_f{n}"))
        if n % 2
        else deliver(committed_client, event(order, payment_id="pay_c"))
        for n in range(DUPLICATES)
    ]

    responses = await asyncio.gather(*deliveries)

    assert [r.status_code for r in responses] == [200] * DUPLICATES
    outcomes = Counter(r.json()["outcome"] for r in responses)
    stored, enrollments, usages = await state(committed_db, order)
    if stored.status == OrderStatus.completed:
        # The capture came first: every failure after it was ignored.
        assert outcomes == {
            "captured": 1,
            "already_captured": DUPLICATES // 2 - 1,
            "ignored_after_capture": DUPLICATES // 2,
        }
        assert stored.payment_status == PaymentStatus.paid
        assert len(enrollments) == 2 and usages == 1
    else:
        # A failure came first: the captures after it were flagged for refund, not applied.
        assert outcomes == {
            "failed": 1,
            "already_closed": DUPLICATES // 2 - 1,
            "late_capture_flagged": DUPLICATES // 2,
        }
        assert stored.status == OrderStatus.cancelled
        assert stored.payment_status == PaymentStatus.failed
        assert stored.metadata_ is not None and stored.metadata_["refundDue"] is True
        assert len(stored.metadata_["lateCaptures"]) == 1
        # The usage row stays with the cancelled order; being cancelled, it no longer counts.
        assert enrollments == [] and usages == 1


async def test_mark_paid_racing_the_gateways_capture_applies_once(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db)
    async with committed_db.transaction() as session:
        admin: User = await make_admin(session)
    headers = auth_headers(admin)

    capture, marked = await asyncio.gather(
        deliver(committed_client, event(order, payment_id="pay_race")),
        committed_client.post(
            f"/api/v1/admin/orders/{order.order_number}/mark-paid", headers=headers
        ),
    )

    assert capture.status_code == 200
    if capture.json()["outcome"] == "captured":
        assert marked.status_code == 409 and marked.json()["code"] == "order_already_paid"
    else:
        assert capture.json()["outcome"] == "already_captured"
        assert marked.status_code == 200
    stored, enrollments, _ = await state(committed_db, order)
    assert stored.status == OrderStatus.completed
    assert [e.status for e in enrollments] == [EnrollmentStatus.active] * 2


async def test_concurrent_refunds_revoke_once(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db)
    async with committed_db.transaction() as session:
        admin: User = await make_admin(session)
    headers = auth_headers(admin)
    paid = await deliver(committed_client, event(order))
    assert paid.json()["outcome"] == "captured"

    responses = await asyncio.gather(
        *(
            committed_client.post(
                f"/api/v1/admin/orders/{order.order_number}/refund",
                json={"reason": f"attempt {n}"},
                headers=headers,
            )
            for n in range(6)
        )
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 5}
    stored, enrollments, _ = await state(committed_db, order)
    assert stored.status == OrderStatus.refunded
    assert stored.payment_status == PaymentStatus.refunded
    winner = next(r for r in responses if r.status_code == 200)
    assert stored.metadata_ is not None
    assert stored.metadata_["refund"]["reason"] == winner.json()["metadata"]["refund"]["reason"]
    assert [e.status for e in enrollments] == [EnrollmentStatus.revoked] * 2
