"""A buyer's orders: GET /orders (keyset pages), GET /orders/{n}, POST /orders/{n}/cancel,
and the expiry of stale pending orders (service and CLI command)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.core.models import utcnow
from coursehub.coupons import repository as coupons_repository
from coursehub.models import CouponUsage, Order, OrderStatus, PaymentStatus
from coursehub.orders.service import expire_stale_order_batch
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)
from tests.orders.invariants import assert_order_invariants
from tests.queries import captured

URL = "/api/v1/orders"


async def test_list_is_own_orders_newest_first_in_keyset_pages(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    stranger = await make_user(session)
    course = await make_course(session, title="Algebra")
    start = utcnow() - timedelta(hours=5)
    made = [
        await make_order(
            session, user=user, courses=[course], created_at=start + timedelta(minutes=i)
        )
        for i in range(5)
    ]
    await make_order(session, user=stranger, courses=[course])
    await session.commit()
    expected = [o.order_number for o in reversed(made)]
    headers = auth_headers(user)

    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get(URL, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [o["orderNumber"] for o in page["items"]]
        assert all(o["items"][0]["course"]["title"] == "Algebra" for o in page["items"])
        cursor = page["next_cursor"]
    assert seen == expected
    assert cursor is None
    # A cursor is bound to its user's list.
    other = await client.get(URL, params={"cursor": "abc"}, headers=auth_headers(stranger))
    assert other.status_code == 400


async def test_list_pages_take_a_fixed_number_of_queries(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:

    user = await make_user(session)
    courses = [await make_course(session) for _ in range(4)]
    coupon = await make_coupon(session)
    for course in courses:
        await make_order(session, user=user, courses=[course], coupon=coupon, discount="1")
    await session.commit()
    headers = auth_headers(user)

    with captured(engine) as small_log:
        small = await client.get(URL, params={"limit": "1"}, headers=headers)
    with captured(engine) as large_log:
        large = await client.get(URL, params={"limit": "50"}, headers=headers)
    assert len(small.json()["items"]) == 1 and len(large.json()["items"]) == 4
    assert small_log.count == large_log.count


async def test_a_node_era_orders_amounts_as_shown_add_up(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """DECIMAL(65,30) lets a Node-era order hold sub-paisa amounts. Each is shown half-up
    to the paisa, and the discount is of the amounts as shown: 100.005 and 90.004 show as
    100.01 and 90.00, so 10.01 off (the exact difference, 10.001, would show 10.00, and
    the three would not add up). The buyer's view and the admin's alike."""
    buyer = await make_user(session)
    admin = await make_admin(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    order.original_amount = Decimal("100.005")
    order.amount = Decimal("90.004")
    await session.commit()
    number = order.order_number

    mine = await client.get(f"{URL}/{number}", headers=auth_headers(buyer))
    admins = await client.get(f"/api/v1/admin/orders/{number}", headers=auth_headers(admin))

    for response in (mine, admins):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["originalAmount"], body["discount"], body["amount"]) == (
            "100.01",
            "10.01",
            "90.00",
        )


async def test_someone_elses_order_is_a_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    snoop = await make_user(session)
    order = await make_order(session, user=owner, courses=[await make_course(session)])
    await session.commit()
    number, owner_headers, snoop_headers = (
        order.order_number,
        auth_headers(owner),
        auth_headers(snoop),
    )

    mine = await client.get(f"{URL}/{number}", headers=owner_headers)
    theirs = await client.get(f"{URL}/{number}", headers=snoop_headers)
    cancel = await client.post(f"{URL}/{number}/cancel", headers=snoop_headers)
    missing = await client.get(f"{URL}/CH-20260101-AAAAAA", headers=owner_headers)

    assert mine.status_code == 200
    assert mine.json()["orderNumber"] == number
    assert (theirs.status_code, theirs.json()["code"]) == (404, "order_not_found")
    assert (cancel.status_code, cancel.json()["code"]) == (404, "order_not_found")
    assert missing.status_code == 404
    await session.refresh(order)
    assert order.status == OrderStatus.pending


async def test_cancelling_a_pending_order_gives_its_coupon_use_back(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    user = await make_user(session)
    rival = await make_user(session)
    course = await make_course(session, price="1000.00")
    coupon = await make_coupon(session, code="ONLYONE", value="10", max_uses=1)
    await session.commit()
    headers, rival_headers, course_id = auth_headers(user), auth_headers(rival), course.id
    admin_headers, user_id = auth_headers(admin), user.id
    coupon_url = f"/api/v1/admin/coupons/{coupon.id}"
    order_body = {"courseIds": [course_id], "couponCode": "ONLYONE"}

    async def coupon_figures() -> tuple[int, int, str]:
        read = (await client.get(coupon_url, headers=admin_headers)).json()
        return read["uses"], read["remainingUses"], read["totalDiscount"]

    placed = await client.post(URL, json=order_body, headers=headers)
    number = placed.json()["orderNumber"]
    used_up = await client.post(URL, json=order_body, headers=rival_headers)
    assert used_up.json()["code"] == "coupon_used_up"
    assert await coupon_figures() == (1, 0, "100.00")

    cancelled = await client.post(f"{URL}/{number}/cancel", headers=headers)

    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    # The order keeps its usage row: it still says which coupon it had, and its amounts
    # still add up; but the use no longer counts.
    assert body["coupon"] == {"code": "ONLYONE", "discount": "100.00"}
    assert (body["originalAmount"], body["amount"]) == ("1000.00", "900.00")
    usage = (await session.execute(select(CouponUsage))).scalar_one()
    assert (usage.order_id, usage.user_id, usage.discount) == (
        placed.json()["id"],
        user_id,
        Decimal("100.00"),
    )
    assert await coupon_figures() == (0, 1, "0.00")
    await assert_order_invariants(session)
    # The use is free again, for the buyer too: the buyer takes it, the rival is too late.
    preview = await client.post(
        "/api/v1/coupons/validate",
        json={"code": "ONLYONE", "courseIds": [course_id]},
        headers=headers,
    )
    assert preview.status_code == 200, preview.text
    again = await client.post(URL, json=order_body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["coupon"] == {"code": "ONLYONE", "discount": "100.00"}
    late = await client.post(URL, json=order_body, headers=rival_headers)
    assert late.json()["code"] == "coupon_used_up"
    twice = await client.post(
        "/api/v1/coupons/validate",
        json={"code": "ONLYONE", "courseIds": [course_id]},
        headers=headers,
    )
    assert twice.json()["code"] == "coupon_already_used"
    usages = (await session.execute(select(CouponUsage.order_id, CouponUsage.user_id))).all()
    assert sorted(usages) == sorted([(placed.json()["id"], user_id), (again.json()["id"], user_id)])
    assert await coupon_figures() == (1, 0, "100.00")
    await assert_order_invariants(session)


async def test_only_a_pending_order_can_be_cancelled(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    course = await make_course(session)
    paid = await make_order(
        session,
        user=user,
        courses=[course],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
    )
    await session.commit()
    headers, number = auth_headers(user), paid.order_number

    response = await client.post(f"{URL}/{number}/cancel", headers=headers)

    assert response.status_code == 409
    assert response.json()["code"] == "order_not_pending"
    # The problem's `status` is the HTTP status (RFC 9457); the order's has its own name.
    assert (response.json()["status"], response.json()["orderStatus"]) == (409, "completed")
    order = (await session.execute(select(Order))).scalar_one()
    assert order.status == OrderStatus.completed


async def test_a_cancelled_order_cannot_be_cancelled_twice(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    order = await make_order(session, user=user, courses=[await make_course(session)])
    await session.commit()
    headers, number = auth_headers(user), order.order_number

    first = await client.post(f"{URL}/{number}/cancel", headers=headers)
    second = await client.post(f"{URL}/{number}/cancel", headers=headers)

    assert first.status_code == 200
    assert (second.status_code, second.json()["code"]) == (409, "order_not_pending")


async def test_expiry_cancels_stale_pending_orders_and_gives_their_coupon_uses_back(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    course = await make_course(session, price="100.00")
    coupon = await make_coupon(session, code="STALE", max_uses=2)
    now = utcnow()
    stale = await make_order(
        session,
        user=user,
        courses=[course],
        coupon=coupon,
        discount="10",
        created_at=now - timedelta(minutes=31),
    )
    fresh = await make_order(
        session, user=user, courses=[course], created_at=now - timedelta(minutes=29)
    )
    old_paid = await make_order(
        session,
        user=user,
        courses=[course],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
        created_at=now - timedelta(days=2),
    )
    await make_enrollment(session, user=user, course=course, order=old_paid)
    await session.commit()

    expired = await expire_stale_order_batch(session, ttl=timedelta(minutes=30), now=now)

    assert expired == [stale.order_number]
    statuses = {
        number: status
        for number, status in (await session.execute(select(Order.order_number, Order.status)))
    }
    assert statuses == {
        stale.order_number: OrderStatus.cancelled,
        fresh.order_number: OrderStatus.pending,
        old_paid.order_number: OrderStatus.completed,
    }
    # The usage row stays with its (now cancelled) order; the use no longer counts, so
    # the coupon has both uses left and its buyer may use it again.
    usage = (await session.execute(select(CouponUsage))).scalar_one()
    assert (usage.order_id, usage.coupon_id, usage.discount) == (stale.id, coupon.id, Decimal(10))
    assert await coupons_repository.count_uses(session, coupon.id) == 0
    found = await coupons_repository.find_coupon_for_user(session, code="STALE", user_id=user.id)
    assert found is not None and found[1] is False  # not "already used by you"
    metadata = (
        await session.execute(
            select(Order.metadata_).where(Order.order_number == stale.order_number)
        )
    ).scalar_one()
    assert metadata == {"cancelReason": "expired"}
    await assert_order_invariants(session)
    # A second run finds nothing more to do.
    assert await expire_stale_order_batch(session, ttl=timedelta(minutes=30), now=now) == []
