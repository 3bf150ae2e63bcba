"""The admins' order SQL: the filtered list and an order with everything its page shows.

The list is keyset-paginated newest first on (createdAt, id). Each filter is served
by an index: none by `Order_createdAt_id_idx`, status by `Order_status_createdAt_id_idx`,
payment status by `Order_paymentStatus_createdAt_id_idx`, refund due by
`Order_refundDue_createdAt_id_idx` (partial), user by `Order_userId_createdAt_idx`,
coupon through `CouponUsage_couponId_idx` (and `Coupon_code_key` for a code); the date
range by whichever of these leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Text, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from coursehub.core.pagination import TimeKeyset

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller imports only this module.
from coursehub.models import Coupon, CouponUsage, Order, OrderItem, OrderStatus, PaymentStatus

# What an admin's order shape reads, in three queries whatever the page size: the
# orders with their buyers, their items with courses, their coupon uses with coupons.
ADMIN_ORDER_OPTIONS: tuple[LoaderOption, ...] = (
    joinedload(Order.user),
    selectinload(Order.items).joinedload(OrderItem.course),
    selectinload(Order.coupon_usage).joinedload(CouponUsage.coupon),
)


# `(metadata ->> 'refundDue') = 'true'` with the key and the value literals, exactly the
# predicate of `Order_refundDue_createdAt_id_idx` (migration 0008): a bound parameter would
# not match it in the generic plan a prepared statement settles on.
_refund_due_flag = Order.metadata_.op("->>", return_type=Text)(literal_column("'refundDue'", Text))
REFUND_DUE = _refund_due_flag == literal_column("'true'", Text)


@dataclass(frozen=True)
class OrderFilters:
    status: OrderStatus | None = None
    payment_status: PaymentStatus | None = None
    refund_due: bool | None = None
    user_id: str | None = None
    coupon_id: str | None = None
    coupon_code: str | None = None  # upper case, as stored
    starts_at: datetime | None = None  # inclusive
    ends_at: datetime | None = None  # exclusive


def _conditions(filters: OrderFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.status is not None:
        conditions.append(Order.status == filters.status)
    if filters.payment_status is not None:
        conditions.append(Order.payment_status == filters.payment_status)
    if filters.refund_due is True:
        conditions.append(REFUND_DUE)
    elif filters.refund_due is False:
        conditions.append(_refund_due_flag.is_distinct_from(literal_column("'true'", Text)))
    if filters.user_id is not None:
        conditions.append(Order.user_id == filters.user_id)
    if filters.coupon_id is not None:
        conditions.append(
            Order.id.in_(
                select(CouponUsage.order_id).where(CouponUsage.coupon_id == filters.coupon_id)
            )
        )
    if filters.coupon_code is not None:
        conditions.append(
            Order.id.in_(
                select(CouponUsage.order_id)
                .join(Coupon, Coupon.id == CouponUsage.coupon_id)
                .where(Coupon.code == filters.coupon_code)
            )
        )
    if filters.starts_at is not None:
        conditions.append(Order.created_at >= filters.starts_at)
    if filters.ends_at is not None:
        conditions.append(Order.created_at < filters.ends_at)
    return conditions


async def list_orders(
    session: AsyncSession, *, filters: OrderFilters, after: TimeKeyset | None, limit: int
) -> list[Order]:
    statement = select(Order).options(*ADMIN_ORDER_OPTIONS).where(*_conditions(filters))
    if after is not None:
        # A plain tuple, so the time binds as the column's type (enrollments/repository.py).
        statement = statement.where(tuple_(Order.created_at, Order.id) < after)
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return list((await session.execute(statement)).unique().scalars())


async def get_order(session: AsyncSession, order_number: str) -> Order | None:
    """The order with everything the admin shape shows, read afresh (`populate_existing`:
    the values just written in this transaction, not a stale copy in the session)."""
    statement = (
        select(Order)
        .options(*ADMIN_ORDER_OPTIONS)
        .where(Order.order_number == order_number)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).unique().scalar_one_or_none()
