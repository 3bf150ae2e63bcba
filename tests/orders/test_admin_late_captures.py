"""Late captures: payments the gateway captured after their order was cancelled or expired
are flagged `refundDue` (payments/service.py); admins find them with
GET /admin/orders?refund_due=true and record their refund with
POST /admin/orders/{orderNumber}/mark-late-capture-refunded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import Order, OrderStatus, PaymentStatus, User
from tests.factories import auth_headers, make_admin, make_course, make_order, make_user
from tests.orders.test_admin_orders import URL
from tests.payments.helpers import commit_setup, deliver, event, fresh


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


async def settle(
    client: httpx.AsyncClient, admin: User, order: Order, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"{URL}/{order.order_number}/mark-late-capture-refunded",
        json=body,
        headers=auth_headers(admin),
    )


async def test_recording_refunds_settles_the_named_captures_and_leaves_the_order_as_it_was(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_a")
    await capture_late(client, order, "pay_b")

    response = await settle(
        client, admin, order, {"paymentIds": ["pay_a", "pay_b"], "reference": "  rfnd_42 "}
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


async def test_a_capture_that_arrived_after_the_admin_looked_stays_due(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The admin refunds pay_a, seen in the list; pay_b is captured before they record it.
    Recording pay_a must not settle pay_b, nor take the order off the list."""
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_a")
    assert await listed(client, admin, "true") == [order.order_number]
    await capture_late(client, order, "pay_b")

    response = await settle(client, admin, order, {"paymentIds": ["pay_a"]})

    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert metadata["refundDue"] is True
    first, second = metadata["lateCaptures"]
    assert first["paymentId"] == "pay_a" and first["refundedBy"] == admin.id
    assert "refundReference" not in first  # none was given
    assert second["paymentId"] == "pay_b" and "refundedAt" not in second
    assert await listed(client, admin, "true") == [order.order_number]

    again = await settle(client, admin, order, {"paymentIds": ["pay_b"], "reference": "r2"})
    assert again.status_code == 200, again.text
    assert again.json()["metadata"]["refundDue"] is False
    assert again.json()["metadata"]["lateCaptures"][0] == first  # settled once, kept as it was
    assert await listed(client, admin, "true") == []


async def test_a_capture_after_the_refund_is_due_again(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_first")
    assert (await settle(client, admin, order, {"paymentIds": ["pay_first"]})).status_code == 200
    await capture_late(client, order, "pay_first")  # a replay of the settled one: nothing new
    assert await listed(client, admin, "true") == []

    await capture_late(client, order, "pay_second")

    stored = await fresh(session, order)
    assert stored.metadata_ is not None and stored.metadata_["refundDue"] is True
    assert [c["paymentId"] for c in stored.metadata_["lateCaptures"]] == ["pay_first", "pay_second"]
    assert await listed(client, admin, "true") == [order.order_number]


@pytest.mark.parametrize(
    "payment_ids",
    [["pay_unknown"], ["pay_late", "pay_unknown"], ["pay_done"]],
)
async def test_a_capture_not_due_is_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, payment_ids: list[str]
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_done")
    assert (await settle(client, admin, order, {"paymentIds": ["pay_done"]})).status_code == 200
    await capture_late(client, order, "pay_late")
    before = await fresh(session, order)
    snapshot = (before.metadata_, before.updated_at)

    response = await settle(client, admin, order, {"paymentIds": payment_ids})

    assert response.status_code == 409
    assert response.json()["code"] == "no_refund_due"
    assert response.json()["paymentIds"] == [p for p in payment_ids if p != "pay_late"]
    after = await fresh(session, order)
    assert (after.metadata_, after.updated_at) == snapshot


async def test_an_order_without_late_captures_is_409_and_an_unknown_one_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)

    quiet = await settle(client, admin, order, {"paymentIds": ["pay_x"]})
    missing = await client.post(
        f"{URL}/CH-NOPE/mark-late-capture-refunded",
        json={"paymentIds": ["pay_x"]},
        headers=auth_headers(admin),
    )

    assert quiet.status_code == 409 and quiet.json()["code"] == "no_refund_due"
    assert (await fresh(session, order)).metadata_ is None
    assert missing.status_code == 404 and missing.json()["code"] == "order_not_found"


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"paymentIds": []},
        {"paymentIds": ["pay_late", "pay_late"]},
        {"paymentIds": [""]},
        {"paymentIds": ["pay_late"], "reference": "x" * 201},
        {"paymentIds": ["pay_late"], "ref": "x"},
    ],
)
async def test_settling_needs_a_sane_body(
    client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any] | None
) -> None:
    admin = await make_admin(session)
    order = await cancelled_order(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_late")

    response = await client.post(
        f"{URL}/{order.order_number}/mark-late-capture-refunded",
        json=body,
        headers=auth_headers(admin),
    )

    assert response.status_code == 422, response.text
    assert await listed(client, admin, "true") == [order.order_number]


async def test_settling_needs_the_admin_role(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    order = await cancelled_order(session)
    buyer = await make_user(session)
    admin = await make_admin(session)
    await commit_setup(session)
    await capture_late(client, order, "pay_late")

    forbidden = await settle(client, buyer, order, {"paymentIds": ["pay_late"]})

    assert forbidden.status_code == 403
    assert await listed(client, admin, "true") == [order.order_number]
