"""Late captures: payments the gateway captured after their order was cancelled or expired
are flagged `refundDue` (payments/service.py); admins find them with
GET /admin/orders?refund_due=true and record their refund with
POST /admin/orders/{orderNumber}/mark-late-capture-refunded."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import Order, OrderStatus, PaymentStatus, User
from tests.factories import auth_headers, make_admin, make_course, make_order, make_user
from tests.orders.test_admin_orders import URL, fresh
from tests.payments.helpers import commit_setup, deliver, event


async def cancelled_order(session: AsyncSession, *, minute: int = 0) -> Order:
    buyer = await make_user(session)
    return await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=OrderStatus.cancelled,
        created_at=datetime(2026, 11, 1, 12, minute, tzinfo=UTC),
    )


async def capture_late(client: httpx.AsyncClient, order: Order, payment_id: str) -> None:
    response = await deliver(client, event(order, payment_id=payment_id))
    assert response.json()["outcome"] == "late_capture_flagged", response.text


async def listed(client: httpx.AsyncClient, admin: User, refund_due: str) -> list[str]:
    response = await client.get(URL, params={"refund_due": refund_due}, headers=auth_headers(admin))
    assert response.status_code == 200, response.text
    return [item["orderNumber"] for item in response.json()["items"]]


async def test_the_list_narrows_to_orders_with_a_refund_due(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    late = await cancelled_order(session, minute=1)
    other_late = await cancelled_order(session, minute=2)
    quiet = await cancelled_order(session, minute=3)
    await commit_setup(session)
    await capture_late(client, late, "pay_late_1")
    await capture_late(client, other_late, "pay_late_2")

    due = await listed(client, admin, "true")
    not_due = await listed(client, admin, "false")

    assert due == [other_late.order_number, late.order_number]  # newest first
    assert quiet.order_number in not_due
    assert not {late.order_number, other_late.order_number} & set(not_due)


async def test_recording_the_refund_settles_every_late_capture_and_leaves_the_order_as_it_was(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_a")
    await capture_late(client, order, "pay_b")

    response = await client.post(
        f"{URL}/{order.order_number}/mark-late-capture-refunded",
        json={"reference": "  rfnd_42 "},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert metadata["refundDue"] is False
    assert [c["paymentId"] for c in metadata["lateCaptures"]] == ["pay_a", "pay_b"]
    for capture in metadata["lateCaptures"]:
        assert capture["refundedBy"] == admin.id
        assert capture["refundReference"] == "rfnd_42"
        assert capture["refundedAt"]
    stored = await fresh(session, order)
    assert (stored.status, stored.payment_status) == (OrderStatus.cancelled, PaymentStatus.pending)
    assert stored.metadata_ == metadata
    assert await listed(client, admin, "true") == []


async def test_a_capture_after_the_refund_is_due_again_and_keeps_the_settled_one(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_first")
    settled = await client.post(
        f"{URL}/{order.order_number}/mark-late-capture-refunded", headers=auth_headers(admin)
    )
    assert settled.status_code == 200, settled.text
    await capture_late(client, order, "pay_second")

    stored = await fresh(session, order)

    assert stored.metadata_ is not None and stored.metadata_["refundDue"] is True
    first, second = stored.metadata_["lateCaptures"]
    assert first["paymentId"] == "pay_first" and first["refundedBy"] == admin.id
    assert "refundReference" not in first  # none was given
    assert second["paymentId"] == "pay_second" and "refundedAt" not in second
    assert await listed(client, admin, "true") == [order.order_number]


async def test_nothing_due_is_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    before = await fresh(session, order)
    snapshot = (before.metadata_, before.updated_at)

    response = await client.post(
        f"{URL}/{order.order_number}/mark-late-capture-refunded", headers=auth_headers(admin)
    )
    twice = await client.post(
        f"{URL}/CH-NOPE/mark-late-capture-refunded", headers=auth_headers(admin)
    )

    assert response.status_code == 409
    assert response.json()["code"] == "no_refund_due"
    after = await fresh(session, order)
    assert (after.metadata_, after.updated_at) == snapshot
    assert twice.status_code == 404 and twice.json()["code"] == "order_not_found"


async def test_settling_needs_the_admin_role_and_a_sane_reference(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    buyer = await make_user(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_late")
    url = f"{URL}/{order.order_number}/mark-late-capture-refunded"

    forbidden = await client.post(url, headers=auth_headers(buyer))
    too_long = await client.post(url, json={"reference": "x" * 201}, headers=auth_headers(admin))
    unknown_field = await client.post(url, json={"ref": "x"}, headers=auth_headers(admin))

    assert forbidden.status_code == 403
    assert too_long.status_code == 422 and unknown_field.status_code == 422
    assert await listed(client, admin, "true") == [order.order_number]
