"""Every action on one order costs the same statements whatever its size: an order of one
course and an order of twenty (with a coupon) are read, paid, refunded and cancelled with
the same number of statements, each the number written here. Enrollments are granted and
revoked for all the items at once, and an order is read with its items in one statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.models import Order, OrderStatus, PaymentStatus, User
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)
from tests.payments.helpers import commit_setup, deliver, event
from tests.queries import captured

SMALL, LARGE = 1, 20
ADMIN_ORDERS = "/api/v1/admin/orders"

# A request with the order, the buyer's and the admin's headers.
Request = Callable[
    [httpx.AsyncClient, Order, dict[str, str], dict[str, str]], Awaitable[httpx.Response]
]


def _get_mine(
    c: httpx.AsyncClient, o: Order, buyer: dict[str, str], _: dict[str, str]
) -> Awaitable[httpx.Response]:
    return c.get(f"/api/v1/orders/{o.order_number}", headers=buyer)


def _cancel_mine(
    c: httpx.AsyncClient, o: Order, buyer: dict[str, str], _: dict[str, str]
) -> Awaitable[httpx.Response]:
    return c.post(f"/api/v1/orders/{o.order_number}/cancel", headers=buyer)


def _admin_get(
    c: httpx.AsyncClient, o: Order, _: dict[str, str], admin: dict[str, str]
) -> Awaitable[httpx.Response]:
    return c.get(f"{ADMIN_ORDERS}/{o.order_number}", headers=admin)


def _mark_paid(
    c: httpx.AsyncClient, o: Order, _: dict[str, str], admin: dict[str, str]
) -> Awaitable[httpx.Response]:
    return c.post(f"{ADMIN_ORDERS}/{o.order_number}/mark-paid", headers=admin)


def _admin_cancel(
    c: httpx.AsyncClient, o: Order, _: dict[str, str], admin: dict[str, str]
) -> Awaitable[httpx.Response]:
    return c.post(f"{ADMIN_ORDERS}/{o.order_number}/cancel", json={"reason": "test"}, headers=admin)


def _refund(
    c: httpx.AsyncClient, o: Order, _: dict[str, str], admin: dict[str, str]
) -> Awaitable[httpx.Response]:
    return c.post(f"{ADMIN_ORDERS}/{o.order_number}/refund", json={"reason": "test"}, headers=admin)


def _capture(
    c: httpx.AsyncClient, o: Order, _: dict[str, str], __: dict[str, str]
) -> Awaitable[httpx.Response]:
    return deliver(c, event(o, payment_id=f"pay_{o.order_number}"))


# (the request, the state its order starts in, the statements it sends)
ACTIONS: list[tuple[Request, OrderStatus, PaymentStatus, int]] = [
    (_get_mine, OrderStatus.pending, PaymentStatus.pending, 4),
    (_cancel_mine, OrderStatus.pending, PaymentStatus.pending, 5),
    (_admin_get, OrderStatus.pending, PaymentStatus.pending, 4),
    (_mark_paid, OrderStatus.pending, PaymentStatus.pending, 8),
    (_admin_cancel, OrderStatus.processing, PaymentStatus.pending, 6),
    (_refund, OrderStatus.completed, PaymentStatus.paid, 7),
    (_capture, OrderStatus.pending, PaymentStatus.pending, 4),
]


async def _order_of(
    session: AsyncSession, *, buyer: User, size: int, status: OrderStatus, paid: PaymentStatus
) -> Order:
    courses = [await make_course(session, price="100.00") for _ in range(size)]
    order = await make_order(
        session,
        user=buyer,
        courses=courses,
        status=status,
        payment_status=paid,
        coupon=await make_coupon(session, value="10"),
        discount=Decimal("10.00") * size,
    )
    if status == OrderStatus.completed:
        for course in courses:
            await make_enrollment(session, user=buyer, course=course, order=order)
    return order


@pytest.mark.parametrize(
    ("request_of", "status", "paid", "statements"),
    ACTIONS,
    ids=lambda a: getattr(a, "__name__", ""),
)
async def test_an_action_on_an_order_costs_the_same_statements_whatever_its_size(
    client: httpx.AsyncClient,
    session: AsyncSession,
    engine: AsyncEngine,
    request_of: Request,
    status: OrderStatus,
    paid: PaymentStatus,
    statements: int,
) -> None:
    admin = auth_headers(await make_admin(session))
    counts = []
    for size in (SMALL, LARGE):
        user = await make_user(session)
        order = await _order_of(session, buyer=user, size=size, status=status, paid=paid)
        await commit_setup(session)
        buyer = auth_headers(user)

        with captured(engine) as log:
            response = await request_of(client, order, buyer, admin)

        assert response.status_code == 200, response.text
        counts.append(log.count)
    assert counts == [statements, statements], counts
