"""The sales report's SQL: two aggregate queries over the orders placed in a window
(`Order_createdAt_id_idx` finds them), whatever the number of orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller imports only this module.
from coursehub.models import CouponUsage, Course, Order, OrderItem, OrderStatus

ZERO = literal(Decimal(0))


@dataclass(frozen=True)
class StatusTotals:
    status: OrderStatus
    orders: int
    amount: Decimal
    original_amount: Decimal
    discount: Decimal


@dataclass(frozen=True)
class CourseTotals:
    course_id: str
    title: str
    slug: str
    units: int
    sales: Decimal
    revenue: Decimal  # unrounded: the caller rounds once


async def totals_by_status(
    session: AsyncSession, *, starts_at: datetime, ends_at: datetime
) -> list[StatusTotals]:
    """Per status: orders, Σ amount, Σ originalAmount, Σ coupon discount (one query)."""
    statement = (
        select(
            Order.status,
            func.count(),
            func.coalesce(func.sum(Order.amount), ZERO),
            func.coalesce(func.sum(Order.original_amount), ZERO),
            func.coalesce(func.sum(CouponUsage.discount), ZERO),
        )
        # At most one usage per order (CouponUsage_orderId_key): the join adds no rows.
        .outerjoin(CouponUsage, CouponUsage.order_id == Order.id)
        .where(Order.created_at >= starts_at, Order.created_at < ends_at)
        .group_by(Order.status)
    )
    rows = (await session.execute(statement)).all()
    return [StatusTotals(*row) for row in rows]


async def top_courses(
    session: AsyncSession, *, starts_at: datetime, ends_at: datetime, limit: int
) -> list[CourseTotals]:
    """The courses of completed orders by revenue (one query). An order's discount is
    spread over its items in proportion to their prices: price × amount / originalAmount."""
    share = func.coalesce(
        OrderItem.price * Order.amount / func.nullif(Order.original_amount, 0), ZERO
    )
    revenue = func.sum(share)
    statement = (
        select(
            OrderItem.course_id,
            Course.title,
            Course.slug,
            func.count(),
            func.sum(OrderItem.price),
            revenue,
        )
        .join(Order, Order.id == OrderItem.order_id)
        .join(Course, Course.id == OrderItem.course_id)
        .where(
            Order.status == OrderStatus.completed,
            Order.created_at >= starts_at,
            Order.created_at < ends_at,
        )
        .group_by(OrderItem.course_id, Course.title, Course.slug)
        .order_by(revenue.desc(), OrderItem.course_id)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [CourseTotals(*row) for row in rows]
