"""Mark-paid of an unpaid order that is neither pending nor processing: 409
`invalid_order_transition`, whatever the status (admin-orders.md), not only a cancelled one.
Orders carried over from the Node app can be completed or refunded without being paid."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import OrderStatus, PaymentStatus
from tests.factories import auth_headers, make_admin, make_course, make_order, make_user
from tests.payments.helpers import commit_setup, enrollments_of, fresh


@pytest.mark.parametrize(
    ("status", "payment_status"),
    [
        (OrderStatus.completed, PaymentStatus.pending),
        (OrderStatus.completed, PaymentStatus.failed),
        (OrderStatus.refunded, PaymentStatus.pending),
        (OrderStatus.cancelled, PaymentStatus.failed),
    ],
)
async def test_an_unpaid_closed_order_cannot_be_marked_paid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    status: OrderStatus,
    payment_status: PaymentStatus,
) -> None:
    admin, buyer = await make_admin(session), await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=status,
        payment_status=payment_status,
    )
    await commit_setup(session)
    before = await fresh(session, order)
    snapshot = (before.status, before.payment_status, before.metadata_, before.updated_at)

    response = await client.post(
        f"/api/v1/admin/orders/{order.order_number}/mark-paid", headers=auth_headers(admin)
    )

    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["code"], body["orderStatus"]) == ("invalid_order_transition", status.value)
    after = await fresh(session, order)
    assert (after.status, after.payment_status, after.metadata_, after.updated_at) == snapshot
    assert await enrollments_of(session, buyer.id) == {}
