"""The admins' orders: GET /admin/orders (filters, keyset pages), GET one, mark-paid, refund,
cancel.

Setup is committed (a savepoint release inside the test's transaction) so that a
request that fails, and rolls its own work back, does not take the setup with it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import (
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
    make_enrollment,
    make_order,
    make_user,
)
from tests.payments.helpers import commit_setup, enrollments_of, fresh

URL = "/api/v1/admin/orders"


@pytest.fixture
async def admin(session: AsyncSession) -> User:
    user = await make_admin(session)
    await commit_setup(session)
    return user


async def all_pages(
    client: httpx.AsyncClient, admin: User, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # a cursor that does not move on must fail the test, not hang it
        query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
        response = await client.get(URL, params=query, headers=auth_headers(admin))
        assert response.status_code == 200, response.text
        items.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never end")


async def refused_and_unchanged(
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: User,
    order: Order,
    *,
    action: str,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST the admin `action` on `order` (committed), expecting a 409 that changes
    nothing of the order; the response, for the caller's own assertions."""
    before = await fresh(session, order)
    snapshot = (before.status, before.payment_status, before.metadata_, before.updated_at)

    response = await client.post(
        f"{URL}/{order.order_number}/{action}", json=body, headers=auth_headers(admin)
    )

    assert response.status_code == 409, response.text
    assert response.json()["status"] == 409
    after = await fresh(session, order)
    assert (after.status, after.payment_status, after.metadata_, after.updated_at) == snapshot
    return response


# --- the list ---------------------------------------------------------------------------


async def test_list_shows_every_order_newest_first_with_buyer_items_and_coupon(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    alice = await make_user(session, email="alice@example.com", username="alice")
    bob = await make_user(session)
    course = await make_course(session, title="Django", price="1000.00")
    coupon = await make_coupon(session, code="TENOFF")
    now = datetime.now(UTC)
    older = await make_order(
        session, user=alice, courses=[course], created_at=now - timedelta(hours=2)
    )
    newer = await make_order(
        session,
        user=bob,
        courses=[course],
        coupon=coupon,
        discount=Decimal("100.00"),
        created_at=now - timedelta(hours=1),
    )
    await commit_setup(session)

    response = await client.get(URL, headers=auth_headers(admin))

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["orderNumber"] for item in items] == [newer.order_number, older.order_number]
    first, second = items
    assert first["coupon"] == {"code": "TENOFF", "discount": "100.00"}
    assert first["amount"] == "900.00" and first["originalAmount"] == "1000.00"
    assert first["discount"] == "100.00"
    assert second["userId"] == alice.id
    assert second["userEmail"] == "alice@example.com"
    assert second["username"] == "alice"
    assert second["coupon"] is None
    assert second["items"][0]["course"]["title"] == "Django"
    assert second["items"][0]["price"] == "1000.00"


async def test_filters_narrow_the_list(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    alice = await make_user(session)
    bob = await make_user(session)
    course = await make_course(session, price="500.00")
    coupon = await make_coupon(session, code="SPRING-24")
    other_coupon = await make_coupon(session, code="AUTUMN")
    day = datetime(2026, 3, 10, 12, tzinfo=UTC)
    pending = await make_order(session, user=alice, courses=[course], created_at=day)
    paid = await make_order(
        session,
        user=bob,
        courses=[course],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
        coupon=coupon,
        discount="50",
        created_at=day + timedelta(days=1),
    )
    failed = await make_order(
        session,
        user=alice,
        courses=[course],
        status=OrderStatus.cancelled,
        payment_status=PaymentStatus.failed,
        coupon=other_coupon,
        discount="10",
        created_at=day + timedelta(days=2),
    )
    await commit_setup(session)

    async def numbers(**params: Any) -> set[str]:
        return {item["orderNumber"] for item in await all_pages(client, admin, params)}

    assert await numbers(status="completed") == {paid.order_number}
    assert await numbers(payment_status="failed") == {failed.order_number}
    assert await numbers(user_id=alice.id) == {pending.order_number, failed.order_number}
    assert await numbers(coupon_code="spring-24") == {paid.order_number}  # any case
    assert await numbers(coupon_id=other_coupon.id) == {failed.order_number}
    assert await numbers(coupon_code="NOSUCH") == set()
    # A date is the whole day; a time is exact (`to` exclusive).
    assert await numbers(**{"from": "2026-03-11", "to": "2026-03-11"}) == {paid.order_number}
    assert await numbers(**{"from": "2026-03-10T12:00:00Z"}) == {
        pending.order_number,
        paid.order_number,
        failed.order_number,
    }
    assert await numbers(**{"to": "2026-03-10T12:00:00Z"}) == set()
    assert await numbers(**{"from": "2026-03-11", "user_id": alice.id}) == {failed.order_number}
    assert await numbers(status="pending", payment_status="paid") == set()


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata"])
async def test_keyset_pages_cover_every_order_once_even_with_equal_timestamps(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, time_zone: str
) -> None:
    """Whatever the session's TimeZone (the store sets UTC; an operator's role setting may
    differ): the cursor's time compares as the stored one."""
    buyer = await make_user(session)
    course = await make_course(session)
    moment = datetime(2026, 5, 1, tzinfo=UTC)
    orders = [
        await make_order(
            session, user=buyer, courses=[course], created_at=moment + timedelta(seconds=n // 2)
        )
        for n in range(7)
    ]
    await session.execute(text(f"SET LOCAL TIME ZONE '{time_zone}'"))
    await commit_setup(session)

    items = await all_pages(client, admin, {"limit": 2})

    numbers = [item["orderNumber"] for item in items]
    assert sorted(numbers) == sorted(o.order_number for o in orders)
    assert len(numbers) == len(set(numbers))
    keys = [(item["createdAt"], item["id"]) for item in items]
    assert keys == sorted(keys, reverse=True)


async def test_a_cursor_reused_with_other_filters_is_400(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    course = await make_course(session)
    for _ in range(3):
        await make_order(session, user=buyer, courses=[course])
    await commit_setup(session)
    headers = auth_headers(admin)
    cursor = (await client.get(URL, params={"limit": 1}, headers=headers)).json()["next_cursor"]

    response = await client.get(
        URL, params={"limit": 1, "cursor": cursor, "status": "pending"}, headers=headers
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "params",
    [
        {"status": "shipped"},
        {"payment_status": "maybe"},
        {"from": "2026-03-12", "to": "2026-03-11"},
        {"from": "yesterday"},
        {"limit": 0},
        {"limit": 101},
    ],
)
async def test_bad_filters_are_422(
    client: httpx.AsyncClient, admin: User, params: dict[str, Any]
) -> None:
    response = await client.get(URL, params=params, headers=auth_headers(admin))

    assert response.status_code == 422, response.text


async def test_admin_order_routes_need_the_admin_role(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    order = await make_order(session, user=user, courses=[await make_course(session)])
    await commit_setup(session)
    headers = auth_headers(user)

    assert (await client.get(URL, headers=headers)).status_code == 403
    assert (await client.get(URL)).status_code == 401
    paid = await client.post(f"{URL}/{order.order_number}/mark-paid", headers=headers)
    assert paid.status_code == 403
    cancelled = await client.post(
        f"{URL}/{order.order_number}/cancel", json={"reason": "mine"}, headers=headers
    )
    assert cancelled.status_code == 403
    assert (await fresh(session, order)).status == OrderStatus.pending


async def test_get_one_order(client: httpx.AsyncClient, session: AsyncSession, admin: User) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    found = await client.get(f"{URL}/{order.order_number}", headers=auth_headers(admin))
    missing = await client.get(f"{URL}/CH-NOPE", headers=auth_headers(admin))

    assert found.status_code == 200 and found.json()["id"] == order.id
    assert missing.status_code == 404 and missing.json()["code"] == "order_not_found"


# --- mark-paid --------------------------------------------------------------------------


async def test_mark_paid_has_the_effects_of_a_capture(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    courses = [await make_course(session), await make_course(session)]
    order = await make_order(session, user=buyer, courses=courses)
    await commit_setup(session)

    response = await client.post(
        f"{URL}/{order.order_number}/mark-paid",
        json={"paymentMethod": "bank_transfer", "reference": "UTR123"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["paymentStatus"] == "paid"
    assert body["paymentMethod"] == "bank_transfer"
    assert body["metadata"]["paymentReference"] == "UTR123"
    assert body["metadata"]["markedPaidBy"] == admin.id
    stored = await fresh(session, order)
    assert stored.status == OrderStatus.completed
    assert stored.payment_status == PaymentStatus.paid
    enrollments = await enrollments_of(session, buyer.id)
    assert sorted(enrollments) == sorted(c.id for c in courses)
    assert all(
        e.status == EnrollmentStatus.active and e.order_id == order.id for e in enrollments.values()
    )


async def test_mark_paid_without_a_body_records_offline(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    response = await client.post(
        f"{URL}/{order.order_number}/mark-paid", headers=auth_headers(admin)
    )

    assert response.status_code == 200, response.text
    assert response.json()["paymentMethod"] == "offline"


@pytest.mark.parametrize(
    ("status", "payment_status", "code"),
    [
        (OrderStatus.completed, PaymentStatus.paid, "order_already_paid"),
        (OrderStatus.refunded, PaymentStatus.refunded, "order_already_paid"),
        (OrderStatus.cancelled, PaymentStatus.failed, "invalid_order_transition"),
        (OrderStatus.cancelled, PaymentStatus.pending, "invalid_order_transition"),
        # Unpaid but neither pending nor processing: as the Node app could leave them.
        (OrderStatus.completed, PaymentStatus.pending, "invalid_order_transition"),
        (OrderStatus.completed, PaymentStatus.failed, "invalid_order_transition"),
        (OrderStatus.refunded, PaymentStatus.pending, "invalid_order_transition"),
    ],
)
async def test_mark_paid_from_a_closed_order_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: User,
    status: OrderStatus,
    payment_status: PaymentStatus,
    code: str,
) -> None:
    buyer = await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=status,
        payment_status=payment_status,
    )
    await commit_setup(session)

    response = await refused_and_unchanged(client, session, admin, order, action="mark-paid")

    assert response.json()["code"] == code
    if code == "invalid_order_transition":
        assert response.json()["orderStatus"] == status.value
    assert await enrollments_of(session, buyer.id) == {}


async def test_mark_paid_of_an_unknown_order_is_404(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post(f"{URL}/CH-NOPE/mark-paid", headers=auth_headers(admin))

    assert response.status_code == 404


# --- refunds ----------------------------------------------------------------------------


async def test_refund_revokes_the_orders_enrollments_and_keeps_the_reason(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    bought = [await make_course(session), await make_course(session)]
    granted_by_admin = await make_course(session)
    order = await make_order(
        session,
        user=buyer,
        courses=bought,
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
    )
    for course in bought:
        await make_enrollment(session, user=buyer, course=course, order=order, progress=30)
    await make_enrollment(session, user=buyer, course=granted_by_admin)
    await commit_setup(session)

    response = await client.post(
        f"{URL}/{order.order_number}/refund",
        json={"reason": "  Bought by mistake  "},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "refunded" and body["paymentStatus"] == "refunded"
    assert body["metadata"]["refund"]["reason"] == "Bought by mistake"
    assert body["metadata"]["refund"]["refundedBy"] == admin.id
    stored = await fresh(session, order)
    assert stored.status == OrderStatus.refunded
    assert stored.payment_status == PaymentStatus.refunded
    by_course = await enrollments_of(session, buyer.id)
    assert all(by_course[c.id].status == EnrollmentStatus.revoked for c in bought)
    assert all(by_course[c.id].progress == 30 for c in bought)  # kept, in case of a re-buy
    assert by_course[granted_by_admin.id].status == EnrollmentStatus.active  # not the order's


@pytest.mark.parametrize(
    ("status", "payment_status"),
    [
        (OrderStatus.pending, PaymentStatus.pending),
        (OrderStatus.processing, PaymentStatus.pending),
        (OrderStatus.cancelled, PaymentStatus.failed),
        (OrderStatus.refunded, PaymentStatus.refunded),
        # Inconsistent on purpose: completed but not marked paid is not refundable either.
        (OrderStatus.completed, PaymentStatus.pending),
    ],
)
async def test_refund_from_any_other_state_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: User,
    status: OrderStatus,
    payment_status: PaymentStatus,
) -> None:
    buyer = await make_user(session)
    course = await make_course(session)
    order = await make_order(
        session, user=buyer, courses=[course], status=status, payment_status=payment_status
    )
    await make_enrollment(session, user=buyer, course=course, order=order)
    await commit_setup(session)

    response = await refused_and_unchanged(
        client, session, admin, order, action="refund", body={"reason": "why not"}
    )

    assert response.json()["code"] == "order_not_refundable"
    assert [e.status for e in (await enrollments_of(session, buyer.id)).values()] == [
        EnrollmentStatus.active
    ]


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "  a "}, {"reason": "x" * 501}])
async def test_refund_needs_a_reason(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, body: dict[str, Any]
) -> None:
    buyer = await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
    )
    await commit_setup(session)

    response = await client.post(
        f"{URL}/{order.order_number}/refund", json=body, headers=auth_headers(admin)
    )

    assert response.status_code == 422
    assert (await fresh(session, order)).status == OrderStatus.completed


async def test_a_paid_then_refunded_order_can_be_bought_again_and_reactivates(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    course = await make_course(session)
    first = await make_order(session, user=buyer, courses=[course])
    await commit_setup(session)
    headers = auth_headers(admin)

    await client.post(f"{URL}/{first.order_number}/mark-paid", headers=headers)
    await client.post(
        f"{URL}/{first.order_number}/refund", json={"reason": "test"}, headers=headers
    )
    second = await make_order(session, user=buyer, courses=[course])
    await commit_setup(session)
    response = await client.post(f"{URL}/{second.order_number}/mark-paid", headers=headers)

    assert response.status_code == 200
    [enrollment] = (await enrollments_of(session, buyer.id)).values()
    assert enrollment.status == EnrollmentStatus.active
    assert enrollment.order_id == second.id


# --- cancel -----------------------------------------------------------------------------


async def test_cancelling_a_stuck_processing_order_frees_its_courses_and_coupon(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    """A `processing` order (as the Node app left some) blocks its buyer from buying its
    courses again, and holds their use of its coupon, until something moves it."""
    buyer = await make_user(session)
    course = await make_course(session, price="1000.00")
    coupon = await make_coupon(session, value="10", max_uses=1)
    order = await make_order(
        session,
        user=buyer,
        courses=[course],
        status=OrderStatus.processing,
        coupon=coupon,
        discount="100.00",
    )
    await commit_setup(session)
    checkout = {"courseIds": [course.id], "couponCode": coupon.code}
    blocked = await client.post("/api/v1/orders", json=checkout, headers=auth_headers(buyer))
    assert blocked.status_code == 409
    assert blocked.json()["code"] == "course_in_pending_order"

    response = await client.post(
        f"{URL}/{order.order_number}/cancel",
        json={"reason": "  stuck since the migration "},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["paymentStatus"]) == ("cancelled", "pending")
    assert body["metadata"]["cancelReason"] == "cancelled_by_admin"
    assert body["metadata"]["cancellation"]["reason"] == "stuck since the migration"
    assert body["metadata"]["cancellation"]["cancelledBy"] == admin.id
    stored = await fresh(session, order)
    assert stored.status == OrderStatus.cancelled
    assert stored.updated_at > stored.created_at
    again = await client.post("/api/v1/orders", json=checkout, headers=auth_headers(buyer))
    assert again.status_code == 201, again.text
    assert Decimal(again.json()["discount"]) == Decimal("100.00")


async def test_cancelling_a_pending_order_keeps_its_failed_payment_status(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        payment_status=PaymentStatus.failed,
    )
    await commit_setup(session)

    response = await client.post(
        f"{URL}/{order.order_number}/cancel",
        json={"reason": "card declined"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    stored = await fresh(session, order)
    assert (stored.status, stored.payment_status) == (OrderStatus.cancelled, PaymentStatus.failed)


@pytest.mark.parametrize(
    ("status", "payment_status"),
    [
        (OrderStatus.completed, PaymentStatus.paid),
        (OrderStatus.cancelled, PaymentStatus.pending),
        (OrderStatus.refunded, PaymentStatus.refunded),
        # Inconsistent on purpose: money taken is refunded, never cancelled away.
        (OrderStatus.processing, PaymentStatus.paid),
    ],
)
async def test_cancel_from_any_other_state_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: User,
    status: OrderStatus,
    payment_status: PaymentStatus,
) -> None:
    buyer = await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=status,
        payment_status=payment_status,
    )
    await commit_setup(session)

    response = await refused_and_unchanged(
        client, session, admin, order, action="cancel", body={"reason": "why not"}
    )

    assert response.json()["code"] == "order_not_cancellable"
    assert response.json()["orderStatus"] == status.value


@pytest.mark.parametrize("body", [{}, {"reason": "  a "}, {"reason": "x" * 501}])
async def test_cancel_needs_a_reason(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, body: dict[str, Any]
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    response = await client.post(
        f"{URL}/{order.order_number}/cancel", json=body, headers=auth_headers(admin)
    )
    unknown = await client.post(
        f"{URL}/CH-NO-SUCH/cancel", json={"reason": "gone"}, headers=auth_headers(admin)
    )

    assert response.status_code == 422
    assert (await fresh(session, order)).status == OrderStatus.pending
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "order_not_found"
