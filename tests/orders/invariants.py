"""The store's money invariants, checked over every order in the database.

- originalAmount = the sum of the order's items;
- amount = originalAmount − its usage's discount (or originalAmount without one), for
  every order, a cancelled one too: usage rows are never deleted;
- a completed order has exactly one enrollment (active or revoked) per item;
- amounts are whole paise and never negative.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.money import to_paise
from coursehub.models import CouponUsage, CourseEnrollment, Order, OrderItem, OrderStatus


async def assert_order_invariants(session: AsyncSession) -> int:
    """Check every order; the number of orders checked."""
    items_sum = (
        select(func.coalesce(func.sum(OrderItem.price), 0))
        .where(OrderItem.order_id == Order.id)
        .scalar_subquery()
    )
    item_count = select(func.count()).where(OrderItem.order_id == Order.id).scalar_subquery()
    usage_discount = select(CouponUsage.discount).where(CouponUsage.order_id == Order.id)
    enrollment_count = (
        select(func.count())
        .where(
            CourseEnrollment.order_id == Order.id,
            CourseEnrollment.course_id.in_(
                select(OrderItem.course_id).where(OrderItem.order_id == Order.id)
            ),
        )
        .scalar_subquery()
    )
    statement = select(
        Order,
        items_sum,
        item_count,
        usage_discount.scalar_subquery(),
        enrollment_count,
    ).execution_options(populate_existing=True)  # as stored, not as this session remembers
    rows = (await session.execute(statement)).all()
    for order, total, count, discount, enrollments in rows:
        number = order.order_number
        assert count >= 1, f"{number} has no items"
        assert order.original_amount == total, f"{number}: original != sum of items"
        if discount is None:
            discount = Decimal(0)
        assert order.amount == order.original_amount - discount, f"{number}: amount mismatch"
        assert order.amount >= 0, f"{number}: negative amount"
        for value in (order.amount, order.original_amount, discount):
            assert to_paise(value) == value, f"{number}: {value} is not whole paise"
        if order.status == OrderStatus.completed:
            assert enrollments == count, f"{number}: {enrollments} enrollments for {count} items"
    return len(rows)


async def count_rows(session: AsyncSession) -> dict[str, int]:
    """How many orders, items, usages and enrollments exist."""
    counts = {}
    for name, model in (
        ("orders", Order),
        ("items", OrderItem),
        ("usages", CouponUsage),
        ("enrollments", CourseEnrollment),
    ):
        counts[name] = (await session.execute(select(func.count()).select_from(model))).scalar_one()
    return counts
