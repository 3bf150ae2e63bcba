"""The floor's checkout (benchmarks/floor.py) makes the store's checks with the store's
semantics, so the comparison is fair: a coupon use counts only while its order is not
cancelled, and a taken order number is retried rather than failing the checkout."""

from __future__ import annotations

from decimal import Decimal
from types import ModuleType

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.bench.suite import load_floor
from coursehub.core.sql import driver_connection
from coursehub.models import CouponUsage, Order, OrderItem, OrderStatus
from tests.factories import make_coupon, make_course, make_order, make_user
from tests.orders.invariants import assert_order_invariants


@pytest.fixture(scope="module")
def floor() -> ModuleType:
    return load_floor()


async def connection_of(session: AsyncSession) -> asyncpg.Connection:
    await session.flush()
    return await driver_connection(session)


async def test_a_coupon_used_by_a_cancelled_order_may_be_used_again(
    session: AsyncSession, floor: ModuleType
) -> None:
    user = await make_user(session)
    course, earlier = await make_course(session), await make_course(session)
    coupon = await make_coupon(session, code="AGAIN")
    await make_order(
        session,
        user=user,
        courses=[earlier],
        coupon=coupon,
        discount="10",
        status=OrderStatus.cancelled,
    )
    connection = await connection_of(session)

    order_id = await floor.place_order(
        connection, user_id=user.id, course_ids=[course.id], coupon_code="again"
    )

    usages = (await session.execute(select(CouponUsage.order_id))).scalars().all()
    assert order_id in usages
    # A use whose order is not cancelled still counts: the same buyer is refused.
    with pytest.raises(floor.CheckoutRefused, match="already used"):
        await floor.place_order(
            connection, user_id=user.id, course_ids=[earlier.id], coupon_code="AGAIN"
        )


async def test_a_taken_order_number_is_retried(
    session: AsyncSession, floor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, other = await make_user(session), await make_user(session)
    course, elsewhere = await make_course(session), await make_course(session)
    taken = await make_order(session, user=other, courses=[elsewhere])
    numbers = iter([taken.order_number, "CH-20260101-FLOOR2"])
    monkeypatch.setattr(floor, "order_number", lambda at: next(numbers))
    connection = await connection_of(session)

    order_id = await floor.place_order(
        connection, user_id=user.id, course_ids=[course.id], coupon_code=None
    )

    order = await session.get(Order, order_id)
    assert order is not None and order.order_number == "CH-20260101-FLOOR2"
    await assert_order_invariants(session)


async def test_every_number_taken_refuses_the_checkout(
    session: AsyncSession, floor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, other = await make_user(session), await make_user(session)
    course, elsewhere = await make_course(session), await make_course(session)
    taken = await make_order(session, user=other, courses=[elsewhere])
    monkeypatch.setattr(floor, "order_number", lambda at: taken.order_number)
    connection = await connection_of(session)

    with pytest.raises(floor.CheckoutRefused, match="order number"):
        await floor.place_order(
            connection, user_id=user.id, course_ids=[course.id], coupon_code=None
        )


async def test_legacy_prices_are_snapshotted_to_the_paisa(
    session: AsyncSession, floor: ModuleType
) -> None:
    user = await make_user(session)
    courses = [await make_course(session, price=p) for p in ("99.995", "0.004", "10.005")]
    connection = await connection_of(session)

    order_id = await floor.place_order(
        connection, user_id=user.id, course_ids=[c.id for c in courses], coupon_code=None
    )

    prices = (
        await session.execute(select(OrderItem.price).where(OrderItem.order_id == order_id))
    ).scalars()
    assert sorted(prices) == [Decimal("0.00"), Decimal("10.01"), Decimal("100.00")]
    await assert_order_invariants(session)
