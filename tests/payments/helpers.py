"""Delivering the gateway's webhook in tests: bodies signed as the gateway signs them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.money import to_paise
from coursehub.models import CourseEnrollment, Order
from coursehub.payments.signature import SIGNATURE_HEADER, sign
from tests.conftest import TEST_WEBHOOK_SECRET

WEBHOOK = "/api/v1/webhooks/payments"


def event(
    order: Order,
    kind: str = "payment.captured",
    *,
    payment_id: str = "pay_test_1",
    amount: Decimal | str | None = None,
    currency: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event": kind,
        "orderNumber": order.order_number,
        "paymentId": payment_id,
        "amount": str(to_paise(order.amount)) if amount is None else str(amount),
        "currency": currency or order.currency,
        **extra,
    }


def signed(
    payload: dict[str, Any] | bytes, secret: str = TEST_WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}


async def deliver(client: httpx.AsyncClient, payload: dict[str, Any] | bytes) -> httpx.Response:
    body, headers = signed(payload)
    return await client.post(WEBHOOK, content=body, headers=headers)


async def fresh(session: AsyncSession, order: Order) -> Order:
    """The order as stored now (re-read, not the session's copy)."""
    statement = select(Order).where(Order.id == order.id).execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one()


async def enrollments_of(session: AsyncSession, user_id: str) -> dict[str, CourseEnrollment]:
    """The user's enrollments as stored now, by course id."""
    statement = (
        select(CourseEnrollment)
        .where(CourseEnrollment.user_id == user_id)
        .execution_options(populate_existing=True)
    )
    return {e.course_id: e for e in (await session.execute(statement)).scalars()}


async def commit_setup(session: AsyncSession) -> None:
    """Commit the test's setup (a savepoint release) and detach it from the session.

    A request that fails rolls the shared session back, which expires every object
    in it; detached, the setup's objects keep their loaded values for the asserts.
    """
    await session.commit()
    session.expunge_all()
