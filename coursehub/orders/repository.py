"""All of the orders' SQL (checkout's, the buyer's order pages, cancelling and expiry).

Checkout is written for few round trips: the courses with everything the rules ask
of them in one query, and the order, its items and its coupon usage in ONE
statement (data-modifying CTEs; the items are one `unnest` of arrays, so the
statement is the same, and prepared once, for 1 or 20 items).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Numeric,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only, selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from coursehub.models import (
    Coupon,
    CouponUsage,
    Course,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderItem,
    OrderStatus,
)

# What `OrderRead.from_order` reads: items with their courses' listing columns, and the
# coupon usage with its coupon. Two extra queries whatever the number of orders.
ORDER_READ_OPTIONS: tuple[LoaderOption, ...] = (
    selectinload(Order.items)
    .joinedload(OrderItem.course)
    .load_only(Course.id, Course.title, Course.slug, Course.thumbnail),
    selectinload(Order.coupon_usage).joinedload(CouponUsage.coupon).load_only(Coupon.code),
)

# Statuses in which an order still holds its courses for its buyer: a second order of
# the same course is refused while one is open.
OPEN_STATUSES = (OrderStatus.pending, OrderStatus.processing)

# The class id of checkout's per-user advisory locks (the object id is the user's).
CHECKOUT_LOCK_CLASS = 0x43480001

# The tables, for the Core statements below (physical column names).
ORDER_TABLE = typing.cast(Table, Order.__table__)
ITEM_TABLE = typing.cast(Table, OrderItem.__table__)
USAGE_TABLE = typing.cast(Table, CouponUsage.__table__)
COUPON_TABLE = typing.cast(Table, Coupon.__table__)

COURSE_COLUMNS = (Course.id, Course.title, Course.slug, Course.thumbnail, Course.price)


@dataclass(frozen=True)
class CheckoutCourse:
    """A course as checkout sees it: the course, and what this buyer already has of it."""

    course: Course
    enrolled: bool  # an active enrollment
    open_order_number: str | None  # another pending/processing order of the buyer's


# --- checkout --------------------------------------------------------------------------


async def lock_user_checkouts(session: AsyncSession, user_id: str) -> None:
    """Serialize this user's checkouts until the transaction ends.

    Every per-user rule (one open order per course, one use per coupon, one order per
    Idempotency-Key) is checked after this and so cannot race with itself. Other
    users are not held up (a hash collision merely queues two users together).
    """
    await session.execute(
        select(func.pg_advisory_xact_lock(CHECKOUT_LOCK_CLASS, func.hashtext(user_id)))
    )


async def find_order_id_by_idempotency_key(
    session: AsyncSession, *, user_id: str, key: str
) -> tuple[str, dict[str, Any] | None] | None:
    """(order id, metadata) of the user's order placed with this key, via its unique index."""
    statement = select(Order.id, Order.metadata_).where(
        Order.user_id == user_id, Order.metadata_["idempotencyKey"].astext == key
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row[0], row[1])


def _courses_of(ids: Sequence[str]) -> Any:
    return Course.id == any_(
        cast(bindparam("course_ids", list(ids), type_=ARRAY(Text)), ARRAY(Text))
    )


async def load_courses(session: AsyncSession, course_ids: Sequence[str]) -> list[Course]:
    """The courses with these ids that are published (listing columns and price)."""
    statement = (
        select(Course)
        .options(load_only(*COURSE_COLUMNS))
        .where(_courses_of(course_ids), Course.is_published.is_(True))
    )
    return list((await session.execute(statement)).scalars())


async def load_courses_for_checkout(
    session: AsyncSession, *, user_id: str, course_ids: Sequence[str]
) -> list[CheckoutCourse]:
    """The published courses among `course_ids`, each with whether the user is actively
    enrolled and the number of an open order of theirs holding it; one query."""
    enrolled = exists().where(
        CourseEnrollment.user_id == user_id,
        CourseEnrollment.course_id == Course.id,
        CourseEnrollment.status == EnrollmentStatus.active,
    )
    open_order = (
        select(Order.order_number)
        .join(OrderItem, OrderItem.order_id == Order.id)
        .where(
            OrderItem.course_id == Course.id,
            Order.user_id == user_id,
            Order.status.in_(OPEN_STATUSES),
        )
        .order_by(Order.created_at)
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        select(Course, enrolled.label("enrolled"), open_order.label("open_order"))
        .options(load_only(*COURSE_COLUMNS))
        .where(_courses_of(course_ids), Course.is_published.is_(True))
    )
    rows = (await session.execute(statement)).all()
    return [CheckoutCourse(course, bool(flag), number) for course, flag, number in rows]


async def insert_order(
    session: AsyncSession,
    *,
    order: Order,
    items: Sequence[OrderItem],
    usage: CouponUsage | None,
) -> bool:
    """Insert the order, its items and its coupon usage (all built, not yet added to the
    session) in one statement.

    `ON CONFLICT ("orderNumber") DO NOTHING`: if the number is taken (a rare random
    collision) nothing at all is written, the transaction stays usable, and the caller
    retries with a new number. True if the order was written.
    """
    table = ORDER_TABLE
    new_order = (
        insert(table)
        .values(
            id=order.id,
            orderNumber=order.order_number,
            userId=order.user_id,
            status=order.status,
            amount=order.amount,
            originalAmount=order.original_amount,
            paymentMethod=order.payment_method,
            paymentStatus=order.payment_status,
            currency=order.currency,
            # None must be SQL NULL (as Prisma leaves it), not the JSON value null.
            metadata=order.metadata_ if order.metadata_ is not None else null(),
            createdAt=order.created_at,
            updatedAt=order.updated_at,
        )
        .on_conflict_do_nothing(index_elements=[table.c.orderNumber])
        .returning(table.c.id)
        .cte("new_order")
    )
    rows = (
        func.unnest(
            bindparam("item_ids", [i.id for i in items], type_=ARRAY(Text)),
            bindparam("item_course_ids", [i.course_id for i in items], type_=ARRAY(Text)),
            bindparam("item_prices", [i.price for i in items], type_=ARRAY(Numeric)),
        )
        .table_valued("id", "course_id", "price")
        .render_derived(name="new_rows")
    )
    new_items = (
        ITEM_TABLE.insert()
        .from_select(
            ["id", "orderId", "courseId", "price", "createdAt"],
            select(
                rows.c.id,
                new_order.c.id,
                rows.c.course_id,
                rows.c.price,
                bindparam("items_created_at", order.created_at, type_=table.c.createdAt.type),
            ).select_from(new_order.join(rows, true())),
        )
        .cte("new_items")
    )
    statement = select(func.count()).select_from(new_order).add_cte(new_items)
    if usage is not None:
        new_usage = (
            USAGE_TABLE.insert()
            .from_select(
                ["id", "couponId", "userId", "orderId", "discount", "createdAt"],
                select(
                    bindparam("usage_id", usage.id, type_=Text),
                    bindparam("usage_coupon_id", usage.coupon_id, type_=Text),
                    bindparam("usage_user_id", usage.user_id, type_=Text),
                    new_order.c.id,
                    bindparam("usage_discount", usage.discount, type_=Numeric),
                    bindparam("usage_created_at", usage.created_at, type_=table.c.createdAt.type),
                ).select_from(new_order),
            )
            .cte("new_usage")
        )
        statement = statement.add_cte(new_usage)
    return bool((await session.execute(statement)).scalar_one())


# --- the buyer's orders ----------------------------------------------------------------


async def get_order_for_read(session: AsyncSession, order_id: str) -> Order | None:
    statement = select(Order).options(*ORDER_READ_OPTIONS).where(Order.id == order_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def get_user_order(session: AsyncSession, *, user_id: str, order_number: str) -> Order | None:
    """The user's order with this number (None for another user's: it is not theirs to see)."""
    statement = (
        select(Order)
        .options(*ORDER_READ_OPTIONS)
        .where(Order.order_number == order_number, Order.user_id == user_id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_user_order(
    session: AsyncSession, *, user_id: str, order_number: str
) -> Order | None:
    """The user's order with this number, its row locked until the transaction ends (so a
    payment, an expiry or a second cancel waits and then sees the new status)."""
    statement = (
        select(Order)
        .options(*ORDER_READ_OPTIONS)
        .where(Order.order_number == order_number, Order.user_id == user_id)
        .with_for_update(of=Order)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def list_user_orders(
    session: AsyncSession, *, user_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[Order]:
    """The user's orders newest first, keyset on (createdAt, id) over
    `Order_userId_createdAt_idx`; three queries whatever the page size."""
    statement = select(Order).options(*ORDER_READ_OPTIONS).where(Order.user_id == user_id)
    if after is not None:
        statement = statement.where(tuple_(Order.created_at, Order.id) < after)
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


# --- expiry ----------------------------------------------------------------------------


async def expire_pending_orders(
    session: AsyncSession,
    *,
    created_before: datetime,
    now: datetime,
    limit: int,
    user_id: str | None = None,
) -> list[str]:
    """Cancel up to `limit` pending orders created before `created_before`, releasing
    their coupon uses, in one statement. Their order numbers.

    `SKIP LOCKED`: an order a payment (or its buyer) holds right now is left for the
    next run rather than waited for. Each released use is recorded in the order's
    metadata as `releasedCoupon`, as `coupons.service.release_coupon_usage` does.
    """
    stale = (
        select(Order.id)
        .where(Order.status == OrderStatus.pending, Order.created_at < created_before)
        .order_by(Order.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if user_id is not None:
        stale = stale.where(Order.user_id == user_id)
    stale_cte = stale.cte("stale")
    released = (
        USAGE_TABLE.delete()
        .where(
            USAGE_TABLE.c.orderId == stale_cte.c.id,
            USAGE_TABLE.c.couponId == COUPON_TABLE.c.id,
        )
        .returning(
            USAGE_TABLE.c.orderId,
            USAGE_TABLE.c.couponId,
            USAGE_TABLE.c.discount,
            COUPON_TABLE.c.code,
        )
        .cte("released")
    )
    released_record = (
        select(
            func.jsonb_build_object(
                "releasedCoupon",
                func.jsonb_build_object(
                    "couponId",
                    released.c.couponId,
                    "code",
                    released.c.code,
                    # As text, like release_coupon_usage: exact, never a JSON float.
                    "discount",
                    cast(released.c.discount, Text),
                ),
            )
        )
        .where(released.c.orderId == Order.id)
        .scalar_subquery()
    )
    empty = cast(literal({}, JSONB), JSONB)
    table = ORDER_TABLE
    statement = (
        table.update()
        .where(table.c.id == stale_cte.c.id)
        .values(
            status=OrderStatus.cancelled,
            updatedAt=now,
            metadata=func.coalesce(table.c.metadata, empty)
            .op("||")(cast(literal({"cancelReason": "expired"}, JSONB), JSONB))
            .op("||")(func.coalesce(released_record, empty)),
        )
        .returning(table.c.orderNumber)
    )
    result = await session.execute(statement)
    return [row[0] for row in result.all()]
