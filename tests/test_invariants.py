"""The money path's invariants, over a realistic history built through the real API.

Checkouts (with percentage, fixed and 100% coupons, and a free course), gateway
captures and failures, replays, a late capture, buyer cancels, expiry, offline
payments, refunds and re-purchases; then, for every order:

- originalAmount = the sum of its items' prices;
- amount = originalAmount − its coupon usage's discount, or originalAmount without a
  coupon, for cancelled orders too (a usage row is never deleted: a cancelled order's
  use just stops counting);
- a coupon's uses by orders not cancelled stay within maxUses, one per user;
- money is never negative and always whole paise;
- a completed order is paid and has exactly one active-or-revoked enrollment per item;
  a refunded one's enrollments are revoked; a cancelled or pending one granted none.

Failing requests along the way must leave no order, item, usage or enrollment behind.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from coursehub.core.models import utcnow
from coursehub.core.money import to_paise
from coursehub.models import (
    Coupon,
    CouponType,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PaymentStatus,
    User,
)
from coursehub.orders.service import expire_stale_order_batch
from tests.factories import auth_headers, make_admin, make_coupon, make_course, make_user
from tests.orders.invariants import count_rows
from tests.payments.helpers import commit_setup, deliver

API = "/api/v1"


def gateway_event(order: dict[str, Any], kind: str, payment_id: str) -> dict[str, Any]:
    return {
        "event": kind,
        "orderNumber": order["orderNumber"],
        "paymentId": payment_id,
        "amount": order["amount"],
        "currency": order["currency"],
    }


class Store:
    """The API, as the test's buyers and admin use it."""

    def __init__(self, client: httpx.AsyncClient, admin: User) -> None:
        self.client = client
        self.admin = auth_headers(admin)

    async def checkout(self, buyer: User, course_ids: list[str], code: str | None = None) -> Any:
        body: dict[str, Any] = {"courseIds": course_ids}
        if code is not None:
            body["couponCode"] = code
        response = await self.client.post(f"{API}/orders", json=body, headers=auth_headers(buyer))
        assert response.status_code == 201, response.text
        return response.json()

    async def gateway(self, order: dict[str, Any], kind: str, payment_id: str) -> str:
        response = await deliver(self.client, gateway_event(order, kind, payment_id))
        assert response.status_code == 200, response.text
        return str(response.json()["outcome"])

    async def admin_post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(f"{API}{path}", json=body, headers=self.admin)


async def test_every_order_keeps_the_invariants(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    ana, ben, chitra, dev = [await make_user(session) for _ in range(4)]
    python = await make_course(session, price="1499.00")
    sql = await make_course(session, price="333.33")
    rust = await make_course(session, price="2499.99")
    git = await make_course(session, price="0.00")
    docker = await make_course(session, price="799.50")
    linux = await make_course(session, price="149.01")
    await make_coupon(
        session, code="FIFTEEN", type=CouponType.percentage, value="15", max_discount="300"
    )
    await make_coupon(session, code="FLAT500", type=CouponType.fixed, value="500")
    await make_coupon(session, code="ALLFREE", type=CouponType.percentage, value="100")
    await make_coupon(session, code="TWICE", type=CouponType.percentage, value="12.5", max_uses=2)
    await commit_setup(session)
    store = Store(client, admin)

    # Ana: a coupon order paid (and the capture replayed), then a failed one bought again
    # and paid offline.
    a1 = await store.checkout(ana, [python.id, sql.id], "fifteen")
    assert await store.gateway(a1, "payment.captured", "pay_a1") == "captured"
    assert await store.gateway(a1, "payment.captured", "pay_a1") == "already_captured"
    a2 = await store.checkout(ana, [rust.id], "TWICE")
    assert await store.gateway(a2, "payment.failed", "pay_a2") == "failed"
    a3 = await store.checkout(ana, [rust.id], "TWICE")
    assert (await store.admin_post(f"/admin/orders/{a3['orderNumber']}/mark-paid")).is_success

    # Ben: a fixed coupon, paid then refunded, then bought again (reactivating); a free one.
    b1 = await store.checkout(ben, [python.id, docker.id, linux.id], "FLAT500")
    await store.gateway(b1, "payment.captured", "pay_b1")
    refund = await store.admin_post(f"/admin/orders/{b1['orderNumber']}/refund", {"reason": "dup"})
    assert refund.status_code == 200, refund.text
    b2 = await store.checkout(ben, [python.id])
    await store.gateway(b2, "payment.captured", "pay_b2")
    b3 = await store.checkout(ben, [git.id])
    assert b3["status"] == "completed" and b3["paymentMethod"] == "free"

    # Chitra: a 100% coupon; a failure, then the same payment captured late; a cancel.
    c1 = await store.checkout(chitra, [sql.id], "ALLFREE")
    assert c1["status"] == "completed" and c1["amount"] == "0.00"
    c2 = await store.checkout(chitra, [docker.id], "TWICE")
    await store.gateway(c2, "payment.failed", "pay_c2")
    assert await store.gateway(c2, "payment.captured", "pay_c2") == "late_capture_flagged"
    c3 = await store.checkout(chitra, [linux.id, rust.id], "fifteen")
    cancelled = await client.post(
        f"{API}/orders/{c3['orderNumber']}/cancel", headers=auth_headers(chitra)
    )
    assert cancelled.status_code == 200, cancelled.text

    # Dev: one left pending, one expired, one still pending in the end.
    d1 = await store.checkout(dev, [docker.id], "FIFTEEN")
    await expire_stale_order_batch(
        session, ttl=timedelta(minutes=30), now=utcnow() + timedelta(hours=1)
    )
    await commit_setup(session)
    d2 = await store.checkout(dev, [docker.id, python.id])
    assert d1["orderNumber"] != d2["orderNumber"]

    # Requests that fail, each of them: nothing may be left behind.
    before = await count_rows(session)
    failures = [
        await deliver(
            client, {**gateway_event(d2, "payment.captured", "pay_bad"), "amount": "1.00"}
        ),
        await deliver(
            client, {**gateway_event(d2, "payment.captured", "pay_bad"), "currency": "USD"}
        ),
        await store.admin_post(f"/admin/orders/{d2['orderNumber']}/refund", {"reason": "nope"}),
        await store.admin_post(f"/admin/orders/{c2['orderNumber']}/mark-paid"),
        await store.admin_post(f"/admin/orders/{a1['orderNumber']}/mark-paid"),
        # Ana already holds python; Dev has docker in a pending order; Ana used TWICE (a3).
        await client.post(
            f"{API}/orders", json={"courseIds": [python.id]}, headers=auth_headers(ana)
        ),
        await client.post(
            f"{API}/orders", json={"courseIds": [docker.id]}, headers=auth_headers(dev)
        ),
        await client.post(
            f"{API}/orders",
            json={"courseIds": [linux.id], "couponCode": "TWICE"},
            headers=auth_headers(ana),
        ),
        await client.post(
            f"{API}/admin/users/{ana.id}/enrollments",
            json={"courseId": python.id},
            headers=store.admin,
        ),
    ]
    assert [r.status_code for r in failures] == [422, 422, 409, 409, 409, 409, 409, 409, 409], [
        r.text for r in failures
    ]
    assert await count_rows(session) == before
    # Every coupon order keeps its usage row, the cancelled a2, c2, c3 and d1 too.
    assert before["usages"] == 8

    await check_invariants(session, expected_orders=11)
    final = {
        o.order_number: (o.status, o.payment_status)
        for o in (await session.execute(select(Order))).scalars()
    }
    assert final[a1["orderNumber"]] == (OrderStatus.completed, PaymentStatus.paid)
    assert final[a2["orderNumber"]] == (OrderStatus.cancelled, PaymentStatus.failed)
    assert final[b1["orderNumber"]] == (OrderStatus.refunded, PaymentStatus.refunded)
    assert final[c2["orderNumber"]] == (OrderStatus.cancelled, PaymentStatus.failed)
    assert final[c3["orderNumber"]] == (OrderStatus.cancelled, PaymentStatus.pending)
    assert final[d1["orderNumber"]][0] == OrderStatus.cancelled
    assert final[d2["orderNumber"]] == (OrderStatus.pending, PaymentStatus.pending)


async def check_invariants(session: AsyncSession, *, expected_orders: int) -> None:
    orders = list(
        (
            await session.execute(
                select(Order)
                .options(selectinload(Order.items), selectinload(Order.coupon_usage))
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )
    assert len(orders) == expected_orders
    enrollments = {
        (e.user_id, e.course_id): e
        for e in (
            await session.execute(
                select(CourseEnrollment).execution_options(populate_existing=True)
            )
        ).scalars()
    }
    for order in orders:
        where = f"order {order.order_number} ({order.status.value})"
        assert order.items, where
        assert order.original_amount == sum((i.price for i in order.items), Decimal(0)), where
        usage = order.coupon_usage
        discount = Decimal(0) if usage is None else usage.discount
        assert order.amount == order.original_amount - discount, where
        for money in (order.amount, order.original_amount, discount):
            assert money >= 0 and money == to_paise(money), where

        held = [enrollments.get((order.user_id, item.course_id)) for item in order.items]
        granted_here = [e for e in enrollments.values() if e.order_id == order.id]
        if order.status == OrderStatus.completed:
            assert order.payment_status == PaymentStatus.paid, where
            assert all(
                e is not None and e.status in (EnrollmentStatus.active, EnrollmentStatus.revoked)
                for e in held
            ), where
        elif order.status == OrderStatus.refunded:
            assert order.payment_status == PaymentStatus.refunded, where
            assert all(e.status == EnrollmentStatus.revoked for e in granted_here), where
        else:
            assert order.payment_status != PaymentStatus.paid, where
            assert granted_here == [], where

    # A coupon's uses are its usages whose orders are not cancelled: at most maxUses of
    # them, one per user (Ana's a2 and a3 both used TWICE; a2 was cancelled).
    counted: dict[str, list[str]] = {}
    for order in orders:
        if order.coupon_usage is not None and order.status != OrderStatus.cancelled:
            counted.setdefault(order.coupon_usage.coupon_id, []).append(order.user_id)
    limits = {
        coupon_id: max_uses
        for coupon_id, max_uses in await session.execute(select(Coupon.id, Coupon.max_uses))
    }
    for coupon_id, users in counted.items():
        assert len(users) == len(set(users)), f"coupon {coupon_id}: a user counted twice"
        limit = limits[coupon_id]
        assert limit is None or len(users) <= limit, f"coupon {coupon_id}: over maxUses"
