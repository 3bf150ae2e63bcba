"""The webhook on orders carried over from the Node app whose metadata is JSON but not an
object: each event is applied as on an order with no metadata (a 500 here would have the
gateway retry forever and leave a paying buyer unenrolled), and what the Node app stored
is kept under `legacy` (coursehub/orders/metadata.py)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import EnrollmentStatus, OrderStatus, PaymentStatus
from tests.orders.test_legacy_metadata import STORED, kept, node_order, stored_metadata
from tests.payments.helpers import commit_setup, deliver, enrollments_of, event


@pytest.mark.parametrize("stored", STORED)
async def test_a_capture_completes_the_order_and_enrolls_the_buyer(
    client: httpx.AsyncClient, session: AsyncSession, stored: str | None
) -> None:
    order = await node_order(session, stored, status=OrderStatus.processing)
    await commit_setup(session)
    order_id, buyer_id = order.id, order.user_id

    response = await deliver(client, event(order, payment_id="pay_1"))

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "captured"
    kind, metadata = await stored_metadata(session, order_id)
    assert kind == "object"
    assert metadata == {
        **kept(stored),
        "via": "gateway",
        "paymentId": "pay_1",
        "paidAt": metadata["paidAt"],
    }
    enrollments = await enrollments_of(session, buyer_id)
    assert [e.status for e in enrollments.values()] == [EnrollmentStatus.active]


@pytest.mark.parametrize("stored", STORED)
async def test_a_failure_cancels_the_order(
    client: httpx.AsyncClient, session: AsyncSession, stored: str | None
) -> None:
    order = await node_order(session, stored)
    await commit_setup(session)

    response = await deliver(
        client, event(order, "payment.failed", payment_id="pay_x", reason="card declined")
    )

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "failed"
    kind, metadata = await stored_metadata(session, order.id)
    assert kind == "object"
    assert metadata.keys() == {*kept(stored), "paymentFailure"}
    assert {k: metadata[k] for k in kept(stored)} == kept(stored)
    assert metadata["paymentFailure"]["reason"] == "card declined"


@pytest.mark.parametrize("stored", STORED)
async def test_a_capture_of_an_order_paid_under_node_is_a_replay(
    client: httpx.AsyncClient, session: AsyncSession, stored: str | None
) -> None:
    """No paymentId was recorded to tell a second payment by: taken as a replay, as for an
    order with no metadata, and nothing changes."""
    order = await node_order(
        session, stored, status=OrderStatus.completed, payment_status=PaymentStatus.paid
    )
    await commit_setup(session)
    before = await stored_metadata(session, order.id)

    response = await deliver(client, event(order, payment_id="pay_again"))

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "already_captured"
    assert await stored_metadata(session, order.id) == before


@pytest.mark.parametrize("stored", STORED)
async def test_a_late_capture_is_flagged_for_a_refund(
    client: httpx.AsyncClient, session: AsyncSession, stored: str | None
) -> None:
    order = await node_order(session, stored, status=OrderStatus.cancelled)
    await commit_setup(session)

    response = await deliver(client, event(order, payment_id="pay_late"))
    replay = await deliver(client, event(order, payment_id="pay_late"))

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "late_capture_flagged"
    assert replay.status_code == 200, replay.text
    kind, metadata = await stored_metadata(session, order.id)
    assert kind == "object"
    assert metadata.keys() == {*kept(stored), "lateCaptures", "refundDue"}
    assert {k: metadata[k] for k in kept(stored)} == kept(stored)
    assert metadata["refundDue"] is True
    assert [c["paymentId"] for c in metadata["lateCaptures"]] == ["pay_late"]
