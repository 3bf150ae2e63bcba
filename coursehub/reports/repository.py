"""The sales report's SQL: two aggregate queries over the orders placed in a window
(`Order_createdAt_id_idx` finds them), whatever the number of orders.

Money of one currency only: the store sells in INR, but orders adopted from the Node app
can carry another currency (or INR in lower case, as `upper` reads it); summed together
their amounts would mean nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller imports only this module.
from coursehub.models import CouponUsage, Course, Order, OrderItem, OrderStatus

ZERO = literal(Decimal(0))


@dataclass(frozen=True)
class StatusTotals:
    status: OrderStatus
    orders: int  # in the currency asked for, as are the sums
    amount: Decimal
    original_amount: Decimal
    discount: Decimal
    other_currency_orders: int  # left out of every other figure


def _in_currency(currency: str) -> ColumnElement[bool]:
    return func.upper(Order.currency) == currency


@dataclass(frozen=True)
class CourseTotals:
    course_id: str
    title: str
    slug: str
    units: int
    sales: Decimal
    revenue: Decimal  # unrounded: the caller rounds once


async def totals_by_status(
    session: AsyncSession, *, starts_at: datetime, ends_at: datetime, currency: str
) -> list[StatusTotals]:
    """Per status, of the orders in `currency`: orders, Σ amount, Σ originalAmount, Σ coupon
    discount; and the number of orders in any other currency (one query)."""
    in_currency = _in_currency(currency)
    statement = (
        select(
            Order.status,
            func.count().filter(in_currency),
            func.coalesce(func.sum(Order.amount).filter(in_currency), ZERO),
            func.coalesce(func.sum(Order.original_amount).filter(in_currency), ZERO),
            func.coalesce(func.sum(CouponUsage.discount).filter(in_currency), ZERO),
            func.count().filter(~in_currency),
        )
        # At most one usage per order (CouponUsage_orderId_key): the join adds no rows.
        .outerjoin(CouponUsage, CouponUsage.order_id == Order.id)
        .where(Order.created_at >= starts_at, Order.created_at < ends_at)
        .group_by(Order.status)
    )
    rows = (await session.execute(statement)).all()
    return [StatusTotals(*row) for row in rows]


async def top_courses(
    session: AsyncSession, *, starts_at: datetime, ends_at: datetime, currency: str, limit: int
) -> list[CourseTotals]:
    """The courses of completed orders in `currency` by revenue (one query). An order's discount is
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
            _in_currency(currency),
        )
        .group_by(OrderItem.course_id, Course.title, Course.slug)
        .order_by(revenue.desc(), OrderItem.course_id)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [CourseTotals(*row) for row in rows]
