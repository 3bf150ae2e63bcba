"""Orders carried over from the Node app whose metadata is JSON but not an object (Prisma's
`Json?` takes any value): every route that reads or merges it answers as for an order
with no metadata, and what the Node app stored is kept, under `legacy`
(coursehub/orders/metadata.py). The webhook's side is tests/payments/
test_webhook_legacy_metadata.py.

Setup is committed (a savepoint release inside the test's transaction) so that a
request that fails, and rolls its own work back, does not take the setup with it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import utcnow
from coursehub.models import Order, OrderStatus, PaymentStatus, User
from coursehub.orders.service import expire_stale_order_batch
from tests.factories import auth_headers, make_admin, make_course, make_order, make_user
from tests.orders.test_checkout import checkout
from tests.payments.helpers import commit_setup, deliver, event

ADMIN_URL = "/api/v1/admin/orders"
URL = "/api/v1/orders"

# What the Node app may have left in "Order".metadata, as jsonb text; None is SQL NULL,
# the case every other test covers, which the others must answer as.
NODE_VALUES: dict[str, str | None] = {
    "sql-null": None,
    "json-null": "null",
    "number": "42",
    "string": '"x"',
    "boolean": "true",
    "array": "[1, 2, 3]",
}
STORED = [pytest.param(value, id=name) for name, value in NODE_VALUES.items()]


async def store_metadata(session: AsyncSession, order: Order, stored: str | None) -> None:
    """Write the metadata as the Node app did, bypassing the model."""
    await session.execute(
        text('UPDATE "Order" SET metadata = CAST(:stored AS jsonb) WHERE id = :id'),
        {"stored": stored, "id": order.id},
    )


async def stored_metadata(session: AsyncSession, order_id: str) -> tuple[str | None, Any]:
    """(jsonb_typeof, value) of the order's metadata as stored now."""
    row = (
        await session.execute(
            select(func.jsonb_typeof(Order.metadata_), Order.metadata_).where(Order.id == order_id)
        )
    ).one()
    return row[0], row[1]


def kept(stored: str | None) -> dict[str, Any]:
    """What a merge into the stored value must keep of it."""
    value = None if stored is None else json.loads(stored)
    return {} if value is None else {"legacy": value}


async def node_order(
    session: AsyncSession,
    stored: str | None,
    *,
    status: OrderStatus = OrderStatus.pending,
    payment_status: PaymentStatus = PaymentStatus.pending,
    user: User | None = None,
    age: timedelta = timedelta(0),
) -> Order:
    order = await make_order(
        session,
        user=user or await make_user(session),
        courses=[await make_course(session, price="250.00")],
        status=status,
        payment_status=payment_status,
        created_at=utcnow() - age,
    )
    await store_metadata(session, order, stored)
    return order


@pytest.fixture
async def admin(session: AsyncSession) -> User:
    return await make_admin(session)


@pytest.mark.parametrize("stored", STORED)
async def test_admins_see_the_metadata_as_stored_in_the_list_and_the_order(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, stored: str | None
) -> None:
    order = await node_order(session, stored)
    await commit_setup(session)
    shown = None if stored is None else json.loads(stored)

    listed = await client.get(ADMIN_URL, headers=auth_headers(admin))
    one = await client.get(f"{ADMIN_URL}/{order.order_number}", headers=auth_headers(admin))

    assert listed.status_code == 200, listed.text
    assert [item["metadata"] for item in listed.json()["items"]] == [shown]
    assert one.status_code == 200, one.text
    assert one.json()["metadata"] == shown


@pytest.mark.parametrize("stored", STORED)
async def test_the_buyer_cancels_and_the_node_value_is_kept(
    client: httpx.AsyncClient, session: AsyncSession, stored: str | None
) -> None:
    buyer = await make_user(session)
    order = await node_order(session, stored, user=buyer)
    await commit_setup(session)

    response = await client.post(f"{URL}/{order.order_number}/cancel", headers=auth_headers(buyer))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert await stored_metadata(session, order.id) == (
        "object",
        {**kept(stored), "cancelReason": "cancelled_by_buyer"},
    )


@pytest.mark.parametrize("stored", STORED)
async def test_an_admin_marks_paid_and_the_node_value_is_kept(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, stored: str | None
) -> None:
    order = await node_order(session, stored)
    await commit_setup(session)

    response = await client.post(
        f"{ADMIN_URL}/{order.order_number}/mark-paid",
        json={"reference": "UTR1"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert (response.json()["status"], response.json()["paymentStatus"]) == ("completed", "paid")
    assert metadata == {
        **kept(stored),
        "via": "admin",
        "markedPaidBy": admin.id,
        "paymentReference": "UTR1",
        "paidAt": metadata["paidAt"],
    }
    assert await stored_metadata(session, order.id) == ("object", metadata)


@pytest.mark.parametrize("stored", STORED)
async def test_an_admin_refunds_and_the_node_value_is_kept(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, stored: str | None
) -> None:
    order = await node_order(
        session, stored, status=OrderStatus.completed, payment_status=PaymentStatus.paid
    )
    await commit_setup(session)

    response = await client.post(
        f"{ADMIN_URL}/{order.order_number}/refund",
        json={"reason": "node refund"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert metadata.keys() == {*kept(stored), "refund"}
    assert metadata["refund"]["reason"] == "node refund"
    assert {k: metadata[k] for k in kept(stored)} == kept(stored)
    assert await stored_metadata(session, order.id) == ("object", metadata)


@pytest.mark.parametrize("stored", STORED)
async def test_an_admin_cancels_and_the_node_value_is_kept(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, stored: str | None
) -> None:
    order = await node_order(session, stored, status=OrderStatus.processing)
    await commit_setup(session)

    response = await client.post(
        f"{ADMIN_URL}/{order.order_number}/cancel",
        json={"reason": "stuck in processing"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert metadata.keys() == {*kept(stored), "cancelReason", "cancellation"}
    assert metadata["cancelReason"] == "cancelled_by_admin"
    assert {k: metadata[k] for k in kept(stored)} == kept(stored)
    assert await stored_metadata(session, order.id) == ("object", metadata)


@pytest.mark.parametrize("stored", STORED)
async def test_recording_a_refund_of_no_late_capture_is_409_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, stored: str | None
) -> None:
    order = await node_order(session, stored, status=OrderStatus.cancelled)
    await commit_setup(session)
    before = await stored_metadata(session, order.id)

    response = await client.post(
        f"{ADMIN_URL}/{order.order_number}/mark-late-capture-refunded",
        json={"paymentIds": ["pay_none"]},
        headers=auth_headers(admin),
    )

    assert (response.status_code, response.json()["code"]) == (409, "no_refund_due")
    assert await stored_metadata(session, order.id) == before


@pytest.mark.parametrize("stored", STORED)
async def test_a_late_capture_is_flagged_listed_and_settled_keeping_the_node_value(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, stored: str | None
) -> None:
    order = await node_order(session, stored, status=OrderStatus.cancelled)
    await commit_setup(session)
    headers = auth_headers(admin)

    captured = await deliver(client, event(order, payment_id="pay_late"))
    due = await client.get(ADMIN_URL, params={"refund_due": "true"}, headers=headers)
    settled = await client.post(
        f"{ADMIN_URL}/{order.order_number}/mark-late-capture-refunded",
        json={"paymentIds": ["pay_late"]},
        headers=headers,
    )

    assert captured.status_code == 200, captured.text
    assert captured.json()["outcome"] == "late_capture_flagged"
    assert [item["orderNumber"] for item in due.json()["items"]] == [order.order_number]
    assert settled.status_code == 200, settled.text
    metadata = settled.json()["metadata"]
    assert metadata.keys() == {*kept(stored), "lateCaptures", "refundDue"}
    assert {k: metadata[k] for k in kept(stored)} == kept(stored)
    assert metadata["refundDue"] is False
    assert [c["paymentId"] for c in metadata["lateCaptures"]] == ["pay_late"]
    assert await stored_metadata(session, order.id) == ("object", metadata)


async def test_the_refund_due_filter_takes_no_value_that_is_not_an_object_for_a_flag(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    """`metadata ->> 'refundDue'` is NULL on an array or a scalar (no error): such orders
    are never due, and are among the others."""
    orders = [
        await node_order(session, value, status=OrderStatus.cancelled)
        for value in NODE_VALUES.values()
    ]
    await commit_setup(session)
    headers = auth_headers(admin)

    due = await client.get(ADMIN_URL, params={"refund_due": "true"}, headers=headers)
    not_due = await client.get(ADMIN_URL, params={"refund_due": "false"}, headers=headers)

    assert due.status_code == 200, due.text
    assert due.json()["items"] == []
    assert not_due.status_code == 200, not_due.text
    assert {item["orderNumber"] for item in not_due.json()["items"]} == {
        order.order_number for order in orders
    }


async def test_checkout_with_an_idempotency_key_beside_node_orders(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The key is looked up as `metadata ->> 'idempotencyKey'`, NULL on a value that is not
    an object: the buyer's Node orders neither match a key nor stand in its way."""
    buyer = await make_user(session)
    for value in NODE_VALUES.values():
        await node_order(session, value, user=buyer, status=OrderStatus.cancelled)
    course = await make_course(session)
    await commit_setup(session)

    first = await checkout(client, buyer, [course.id], key="retry-1")
    again = await checkout(client, buyer, [course.id], key="retry-1")

    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json() == first.json()


@pytest.mark.parametrize("stored", STORED)
async def test_expiry_keeps_the_node_value_and_a_readable_cancel_reason(
    session: AsyncSession, stored: str | None
) -> None:
    order = await node_order(session, stored, age=timedelta(hours=1))
    await session.commit()

    expired = await expire_stale_order_batch(
        session, ttl=timedelta(minutes=30), now=utcnow(), limit=10
    )

    assert expired == [order.order_number]
    assert await stored_metadata(session, order.id) == (
        "object",
        {**kept(stored), "cancelReason": "expired"},
    )
    reason = await session.scalar(
        select(Order.metadata_.op("->>")("cancelReason")).where(Order.id == order.id)
    )
    assert reason == "expired"


# What a hand-edited order may hold under `lateCaptures`, where the store writes a list of
# objects: any JSON value (orders/metadata.py, `late_captures`).
ODD_LATE_CAPTURES = [
    pytest.param('"x"', id="string"),
    pytest.param("42", id="number"),
    pytest.param('{"paymentId": "pay_odd"}', id="object"),
    pytest.param('[1, "x", null, {"refundedAt": "then"}]', id="list-of-others"),
]


@pytest.mark.parametrize("odd", ODD_LATE_CAPTURES)
async def test_an_odd_late_captures_value_is_kept_and_a_capture_still_flagged_and_settled(
    client: httpx.AsyncClient, session: AsyncSession, admin: User, odd: str
) -> None:
    order = await node_order(
        session, f'{{"lateCaptures": {odd}, "refundDue": true}}', status=OrderStatus.cancelled
    )
    await commit_setup(session)
    headers = auth_headers(admin)
    odd_value = json.loads(odd)

    unknown = await client.post(
        f"{ADMIN_URL}/{order.order_number}/mark-late-capture-refunded",
        json={"paymentIds": ["pay_odd"]},
        headers=headers,
    )
    untouched = await stored_metadata(session, order.id)
    captured = await deliver(client, event(order, payment_id="pay_late"))
    replayed = await deliver(client, event(order, payment_id="pay_late"))
    settled = await client.post(
        f"{ADMIN_URL}/{order.order_number}/mark-late-capture-refunded",
        json={"paymentIds": ["pay_late"]},
        headers=headers,
    )

    # An entry that is not the store's own matches no payment id, and is never due.
    assert (unknown.status_code, unknown.json()["code"]) == (409, "no_refund_due")
    assert untouched == ("object", {"lateCaptures": odd_value, "refundDue": True})
    assert (captured.status_code, captured.json()["outcome"]) == (200, "late_capture_flagged")
    assert (replayed.status_code, replayed.json()["outcome"]) == (200, "late_capture_flagged")
    assert settled.status_code == 200, settled.text
    metadata = settled.json()["metadata"]
    captures = metadata["lateCaptures"]
    if isinstance(odd_value, list):
        assert captures[:-1] == odd_value  # kept in place
        assert metadata.keys() == {"lateCaptures", "refundDue"}
    else:
        assert metadata["legacyLateCaptures"] == odd_value  # kept aside
        assert len(captures) == 1
    assert captures[-1]["paymentId"] == "pay_late"
    assert "refundedAt" in captures[-1]
    assert metadata["refundDue"] is False
    assert await stored_metadata(session, order.id) == ("object", metadata)
