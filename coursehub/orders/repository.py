"""All of the orders' SQL (checkout's, the buyer's order pages, cancelling and expiry).

Checkout is written for few round trips: the courses with everything the rules ask
of them in one query, and the order, its items and its coupon usage in ONE
statement (data-modifying CTEs; the items are one `unnest` of arrays, so the
statement is the same, and prepared once, for 1 or 20 items).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Numeric,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, load_only, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.interfaces import LoaderOption

from coursehub.core.locks import CHECKOUT_LOCK_CLASS
from coursehub.core.pagination import TimeKeyset
from coursehub.core.sql import DriverStatement, Writer, as_loaded, aware
from coursehub.coupons.repository import CHECKOUT_COUPON, CouponOffer, offer_from_row
from coursehub.models import (
    Coupon,
    CouponUsage,
    Course,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderItem,
    OrderStatus,
    PaymentStatus,
    User,
)
from coursehub.orders.metadata import LEGACY_KEY
from coursehub.orders.placed import PlacedOrder, SoldCourse
from coursehub.orders.transitions import CANCELLABLE, UNPAID

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

# The tables, for the Core statements below (physical column names).
ORDER_TABLE = typing.cast(Table, Order.__table__)
ITEM_TABLE = typing.cast(Table, OrderItem.__table__)
USAGE_TABLE = typing.cast(Table, CouponUsage.__table__)
COUPON_TABLE = typing.cast(Table, Coupon.__table__)

COURSE_COLUMNS = (Course.id, Course.title, Course.slug, Course.thumbnail, Course.price)


@dataclass(frozen=True)
class CheckoutCourse:
    """A course as checkout sees it: the course, and what this buyer already has of it."""

    course: SoldCourse
    enrolled: bool  # an active enrollment
    open_order_number: str | None  # another pending/processing order of the buyer's


@dataclass(frozen=True)
class CheckoutLoad:
    """What checkout reads before its rules: the courses found, and the coupon asked for
    with whether the buyer holds a use of it that counts (None: no such coupon, or none
    asked for, or no course found to read it beside)."""

    courses: list[CheckoutCourse]
    coupon: tuple[CouponOffer, bool] | None


# --- checkout --------------------------------------------------------------------------
#
# Checkout's statements are built once, here, with named parameters: SQLAlchemy then
# reuses their cache keys and compiled forms (and asyncpg its prepared statements),
# which is most of what separates the store's checkout from plain SQL on asyncpg.

_COURSE_IDS = cast(bindparam("course_ids", type_=ARRAY(Text)), ARRAY(Text))
# The ids as a subquery's result (`= ANY ((SELECT $ids))`), not the parameter itself, so
# PostgreSQL plans the statements below once per connection. Given the array, each custom plan
# sees its real length (two ids, say) while the generic plan assumes ten; the generic
# one then always looked dearer, and checkout's courses were planned afresh at every
# checkout (~150 µs of the database's CPU, pg_prepared_statements: 0 generic plans in
# 600 checkouts). As a subquery's result the array is unknown to both, they cost the
# same, and the generic plan is kept after five, the same plan: an index scan of
# "Course_pkey" (tests/orders/test_checkout_plan.py).
_COURSE_IDS_UNSEEN = cast(select(_COURSE_IDS).scalar_subquery(), ARRAY(Text))
_USER_ID = bindparam("user_id", type_=Text)

# The buyer's checkout lock, then their row as their token found it (the same password
# hash), FOR KEY SHARE: what the order's foreign-key check takes anyway, taken first so
# that an account removal in progress (it holds the row FOR UPDATE) is waited for and then
# seen (READ COMMITTED re-checks a row that changed meanwhile) instead of failing the
# order's insert on its foreign key, or placing an order on an anonymised account. One
# statement: the select list is evaluated in order, the lock before the row.
_BUYER = aliased(User)
LOCK_USER_CHECKOUTS = select(
    func.pg_advisory_xact_lock(CHECKOUT_LOCK_CLASS, func.hashtext(_USER_ID)),
    select(_BUYER.id)
    .where(_BUYER.id == _USER_ID, _BUYER.password == bindparam("password", type_=Text))
    .with_for_update(read=True, key_share=True)
    .scalar_subquery(),
)

# `"metadata" ->> 'idempotencyKey'` with the key's NAME a literal, exactly the expression
# `Order_userId_idempotencyKey_key` is built on (migration 0006). `metadata["…"].astext`
# would bind the name (`metadata ->> $2`), which the index matches only in a custom plan,
# never in the generic plan a prepared statement settles on (tests/orders/
# test_idempotency_plan.py). The `=` proves the index's `IS NOT NULL` predicate itself.
_idempotency_key = Order.metadata_.op("->>", return_type=Text)(
    literal_column("'idempotencyKey'", Text)
)
ORDER_BY_IDEMPOTENCY_KEY = select(Order.id, Order.metadata_).where(
    Order.user_id == _USER_ID, _idempotency_key == bindparam("key", type_=Text)
)

SELLABLE_COURSES = (
    select(Course)
    .options(load_only(*COURSE_COLUMNS))
    .where(Course.id == any_(_COURSE_IDS_UNSEEN), Course.is_published.is_(True))
)

_ENROLLED = exists().where(
    CourseEnrollment.user_id == _USER_ID,
    CourseEnrollment.course_id == Course.id,
    CourseEnrollment.status == EnrollmentStatus.active,
)
_OPEN_ORDER = (
    select(Order.order_number)
    .join(OrderItem, OrderItem.order_id == Order.id)
    .where(
        OrderItem.course_id == Course.id,
        Order.user_id == _USER_ID,
        # Not `in_`: its list is an "expanding" parameter, filled in at each execution,
        # and this statement is compiled once for the driver (core/sql.py).
        or_(*(Order.status == status for status in OPEN_STATUSES)),
    )
    .order_by(Order.created_at)
    .limit(1)
    .scalar_subquery()
)
# Checkout's statements run on the request's asyncpg connection inside its transaction
# (core/sql.py `fetch_in_transaction`): ~250 µs of SQLAlchemy less per statement after
# the first, and no ORM loading (checkout builds its few objects itself).
_LOCK_USER_CHECKOUTS_SQL = DriverStatement(LOCK_USER_CHECKOUTS)
_CHECKOUT_COURSES = select(
    *COURSE_COLUMNS, _ENROLLED.label("enrolled"), _OPEN_ORDER.label("open_order")
).where(Course.id == any_(_COURSE_IDS_UNSEEN), Course.is_published.is_(True))
_CHECKOUT_COURSES_SQL = DriverStatement(_CHECKOUT_COURSES)
# With a coupon code: the same rows, each with the coupon's columns after them (NULL when
# there is no such coupon), so a checkout with a coupon makes no more round trips than
# one without. The coupon is one row, repeated on each course's (two or three, as a rule).
_COUPON = CHECKOUT_COUPON.subquery("coupon")
_CHECKOUT_COURSES_AND_COUPON_SQL = DriverStatement(
    _CHECKOUT_COURSES.add_columns(*_COUPON.c).outerjoin_from(Course, _COUPON, true())
)
_COUPON_AT = len(_CHECKOUT_COURSES.selected_columns)


def _insert_order_statement(*, with_usage: bool) -> Select[Any]:
    """The order, its items and (optionally) its coupon usage, in one statement.

    `ON CONFLICT ("orderNumber") DO NOTHING`: if the number is taken (a rare random
    collision) nothing at all is written, since the items and usage are selected from
    the order's RETURNING, and the transaction stays usable for a retry.

    With a usage, the order is inserted only from `usable_coupon`: the coupon's row, FOR
    KEY SHARE (the lock the usage's foreign-key check takes anyway, taken first), if it
    still has no use limit, or if `use_claimed` (a use of a limited coupon claimed under its
    claim lock). A checkout that found a coupon unlimited takes no claim; an admin giving
    the coupon a limit meanwhile holds its row FOR UPDATE (coupons.service.update_coupon),
    so this waits for that change and then sees it (READ COMMITTED re-checks a row changed
    while the lock was awaited): nothing is written, and the checkout claims a use as for
    any limited coupon. A change that comes after waits for this use to commit, and counts
    it. The statement's second column says which (1: the coupon is usable as read).
    """
    created_at = bindparam("created_at", type_=ORDER_TABLE.c.createdAt.type)
    order_values: dict[str, Any] = {
        "id": bindparam("order_id", type_=Text),
        "orderNumber": bindparam("order_number", type_=Text),
        "userId": _USER_ID,
        "status": bindparam("status", type_=ORDER_TABLE.c.status.type),
        "amount": bindparam("amount", type_=ORDER_TABLE.c.amount.type),
        "originalAmount": bindparam("original_amount", type_=ORDER_TABLE.c.amount.type),
        "paymentMethod": bindparam("payment_method", type_=Text),
        "paymentStatus": bindparam("payment_status", type_=ORDER_TABLE.c.paymentStatus.type),
        "currency": bindparam("currency", type_=Text),
        # None is SQL NULL (as Prisma leaves it), not the JSON value null.
        "metadata": bindparam("metadata", type_=JSONB(none_as_null=True)),
        "createdAt": created_at,
        "updatedAt": created_at,
    }
    usable_coupon = None
    if with_usage:
        usable_coupon = (
            select(COUPON_TABLE.c.id)
            .where(
                COUPON_TABLE.c.id == bindparam("coupon_id", type_=Text),
                or_(
                    COUPON_TABLE.c.maxUses.is_(None),
                    bindparam("use_claimed", type_=Boolean),
                ),
            )
            .with_for_update(read=True, key_share=True)
            .cte("usable_coupon")
        )
        order_insert = insert(ORDER_TABLE).from_select(
            list(order_values),
            select(*(value.label(name) for name, value in order_values.items())).select_from(
                usable_coupon
            ),
        )
    else:
        order_insert = insert(ORDER_TABLE).values(**order_values)
    new_order = (
        order_insert.on_conflict_do_nothing(index_elements=[ORDER_TABLE.c.orderNumber])
        .returning(ORDER_TABLE.c.id)
        .cte("new_order")
    )
    rows = (
        func.unnest(
            bindparam("item_ids", type_=ARRAY(Text)),
            bindparam("item_course_ids", type_=ARRAY(Text)),
            bindparam("item_prices", type_=ARRAY(Numeric)),
        )
        .table_valued("id", "course_id", "price")
        .render_derived(name="new_rows")
    )
    new_items = (
        ITEM_TABLE.insert()
        .from_select(
            ["id", "orderId", "courseId", "price", "createdAt"],
            select(
                rows.c.id, new_order.c.id, rows.c.course_id, rows.c.price, created_at
            ).select_from(new_order.join(rows, true())),
        )
        .cte("new_items")
    )
    if usable_coupon is None:
        return select(func.count()).select_from(new_order).add_cte(new_items)
    new_usage = (
        USAGE_TABLE.insert()
        .from_select(
            ["id", "couponId", "userId", "orderId", "discount", "createdAt"],
            select(
                bindparam("usage_id", type_=Text),
                bindparam("coupon_id", type_=Text),
                _USER_ID,
                new_order.c.id,
                bindparam("discount", type_=USAGE_TABLE.c.discount.type),
                created_at,
            ).select_from(new_order),
        )
        .cte("new_usage")
    )
    return select(
        select(func.count()).select_from(new_order).scalar_subquery(),
        select(func.count()).select_from(usable_coupon).scalar_subquery(),
    ).add_cte(new_items, new_usage)


INSERT_ORDER = _insert_order_statement(with_usage=False)
INSERT_ORDER_WITH_USAGE = _insert_order_statement(with_usage=True)
_INSERT_ORDER_SQL = DriverStatement(INSERT_ORDER)
_INSERT_ORDER_WITH_USAGE_SQL = DriverStatement(INSERT_ORDER_WITH_USAGE)
_ORDER_BY_IDEMPOTENCY_KEY_SQL = DriverStatement(ORDER_BY_IDEMPOTENCY_KEY)
_ORDER_ID = bindparam("order_id", type_=Text)
# An order with its coupon usage and the coupon's code, then its items with their
# courses' listing columns: what `OrderRead` shows.
_ORDER_FOR_READ_SQL = DriverStatement(
    select(
        Order.order_number,
        Order.user_id,
        Order.status,
        Order.amount,
        Order.original_amount,
        Order.payment_method,
        Order.payment_status,
        Order.currency,
        Order.metadata_,
        Order.created_at,
        Order.updated_at,
        CouponUsage.id,
        CouponUsage.coupon_id,
        CouponUsage.discount,
        CouponUsage.created_at,
        Coupon.code,
    )
    .outerjoin(CouponUsage, CouponUsage.order_id == Order.id)
    .outerjoin(Coupon, Coupon.id == CouponUsage.coupon_id)
    .where(Order.id == _ORDER_ID)
)
_ORDER_ITEMS_FOR_READ_SQL = DriverStatement(
    select(
        OrderItem.id,
        OrderItem.course_id,
        OrderItem.price,
        OrderItem.created_at,
        Course.title,
        Course.slug,
        Course.thumbnail,
    )
    .join(Course, Course.id == OrderItem.course_id)
    .where(OrderItem.order_id == _ORDER_ID)
)


async def lock_user_checkouts(writer: Writer, *, user_id: str, password_hash: str) -> bool:
    """Serialize this user's checkouts until the transaction ends, and hold their row as
    it was read (`LOCK_USER_CHECKOUTS`); False if it is not there any more as it was
    (deleted, anonymised, or given a new password since).

    Every per-user rule (one open order per course, one use per coupon, one order per
    Idempotency-Key) is checked after this and so cannot race with itself. Other
    users are not held up (a hash collision merely queues two users together).
    """
    rows = await _LOCK_USER_CHECKOUTS_SQL.fetch_in_transaction(
        writer, user_id=user_id, password=password_hash
    )
    return rows[0][1] is not None


async def find_order_id_by_idempotency_key(
    writer: Writer, *, user_id: str, key: str
) -> tuple[str, dict[str, Any] | None] | None:
    """(order id, metadata) of the user's order placed with this key, via its unique index."""
    rows = await _ORDER_BY_IDEMPOTENCY_KEY_SQL.fetch_in_transaction(
        writer, user_id=user_id, key=key
    )
    return (rows[0][0], rows[0][1]) if rows else None


async def load_courses(session: AsyncSession, course_ids: Sequence[str]) -> list[Course]:
    """The courses with these ids that are published (listing columns and price)."""
    result = await session.execute(SELLABLE_COURSES, {"course_ids": list(course_ids)})
    return list(result.scalars())


async def load_courses_for_checkout(
    writer: Writer, *, user_id: str, course_ids: Sequence[str], coupon_code: str | None = None
) -> CheckoutLoad:
    """The published courses among `course_ids`, each with whether the user is actively
    enrolled and the number of an open order of theirs holding it; and, given a code, the
    coupon (`CHECKOUT_COUPON`) with whether the buyer has used it. One query either way."""
    if coupon_code is None:
        rows = await _CHECKOUT_COURSES_SQL.fetch_in_transaction(
            writer, user_id=user_id, course_ids=list(course_ids)
        )
    else:
        rows = await _CHECKOUT_COURSES_AND_COUPON_SQL.fetch_in_transaction(
            writer, user_id=user_id, course_ids=list(course_ids), code=coupon_code
        )
    found: list[CheckoutCourse] = []
    for row in rows:
        found.append(
            CheckoutCourse(SoldCourse(row[0], row[1], row[2], row[3], row[4]), row[5], row[6])
        )
    coupon = None
    if coupon_code is not None and rows:
        coupon = offer_from_row(rows[0], _COUPON_AT)
    return CheckoutLoad(found, coupon)


class InsertOutcome(enum.Enum):
    inserted = "inserted"
    number_taken = "number_taken"  # nothing written: try another order number
    # Nothing written: the coupon read as unlimited has a limit now (or is gone): read it
    # again, and claim a use.
    coupon_gained_limit = "coupon_gained_limit"


async def insert_order(
    writer: Writer, *, order: PlacedOrder, use_claimed: bool = False
) -> InsertOutcome:
    """Insert the order, its items and its coupon usage in one statement. `use_claimed`: a
    use of the usage's limited coupon was claimed; without one, nothing is written if the
    coupon has a use limit by now (`_insert_order_statement`)."""
    items = order.items
    params: dict[str, Any] = {
        "order_id": order.id,
        "order_number": order.order_number,
        "user_id": order.user_id,
        "status": order.status,
        "amount": order.amount,
        "original_amount": order.original_amount,
        "payment_method": order.payment_method,
        "payment_status": order.payment_status,
        "currency": order.currency,
        "metadata": order.metadata_,
        "created_at": order.created_at,
        "item_ids": [item.id for item in items],
        "item_course_ids": [item.course_id for item in items],
        "item_prices": [item.price for item in items],
    }
    usage = order.coupon_usage
    if usage is None:
        rows = await _INSERT_ORDER_SQL.fetch_in_transaction(writer, **params)
        return InsertOutcome.inserted if rows[0][0] else InsertOutcome.number_taken
    rows = await _INSERT_ORDER_WITH_USAGE_SQL.fetch_in_transaction(
        writer,
        **params,
        usage_id=usage.id,
        coupon_id=usage.coupon_id,
        discount=usage.discount,
        use_claimed=use_claimed,
    )
    inserted, coupon_usable = rows[0]
    if inserted:
        return InsertOutcome.inserted
    return InsertOutcome.number_taken if coupon_usable else InsertOutcome.coupon_gained_limit


# --- the buyer's orders ----------------------------------------------------------------


async def get_order_for_read(writer: Writer, order_id: str) -> Order | None:
    """The order with what `OrderRead.from_order` reads (its items with their courses, its
    coupon usage with its coupon), in two statements on the driver: checkout's answer to
    a replayed Idempotency-Key, in either kind of unit of work."""
    rows = await _ORDER_FOR_READ_SQL.fetch_in_transaction(writer, order_id=order_id)
    if not rows:
        return None
    row = rows[0]
    order = as_loaded(
        writer,
        Order,
        id=order_id,
        order_number=row[0],
        user_id=row[1],
        status=OrderStatus(row[2]),
        amount=row[3],
        original_amount=row[4],
        payment_method=row[5],
        payment_status=PaymentStatus(row[6]),
        currency=row[7],
        metadata_=row[8],
        created_at=aware(row[9]),
        updated_at=aware(row[10]),
    )
    usage = None
    if row[11] is not None:
        usage = as_loaded(
            writer,
            CouponUsage,
            id=row[11],
            coupon_id=row[12],
            user_id=row[1],
            order_id=order_id,
            discount=row[13],
            created_at=aware(row[14]),
        )
        set_committed_value(usage, "coupon", as_loaded(writer, Coupon, id=row[12], code=row[15]))
    items = []
    for item_row in await _ORDER_ITEMS_FOR_READ_SQL.fetch_in_transaction(writer, order_id=order_id):
        item = as_loaded(
            writer,
            OrderItem,
            id=item_row[0],
            order_id=order_id,
            course_id=item_row[1],
            price=item_row[2],
            created_at=aware(item_row[3]),
        )
        course = as_loaded(
            writer,
            Course,
            id=item_row[1],
            title=item_row[4],
            slug=item_row[5],
            thumbnail=item_row[6],
        )
        set_committed_value(item, "course", course)
        items.append(item)
    set_committed_value(order, "items", items)
    set_committed_value(order, "coupon_usage", usage)
    return order


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
    session: AsyncSession, *, user_id: str, after: TimeKeyset | None, limit: int
) -> list[Order]:
    """The user's orders newest first, keyset on (createdAt, id) over
    `Order_userId_createdAt_idx`; three queries whatever the page size."""
    statement = select(Order).options(*ORDER_READ_OPTIONS).where(Order.user_id == user_id)
    if after is not None:
        statement = statement.where(tuple_(Order.created_at, Order.id) < after)
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


# --- expiry ----------------------------------------------------------------------------

_EMPTY_OBJECT = cast(literal({}, JSONB), JSONB)


def _metadata_object(metadata: ColumnElement[Any]) -> ColumnElement[Any]:
    """`orders.metadata.metadata_object` in SQL: an object as it is, SQL NULL or JSON
    `null` as `{}`, any other JSON value as `{"legacy": value}`. `jsonb || jsonb` on
    anything but two objects builds an array, which would bury the key merged in."""
    kind = func.jsonb_typeof(metadata)
    return case(
        (kind == literal("object", Text), metadata),
        (func.coalesce(kind, literal("null", Text)) == literal("null", Text), _EMPTY_OBJECT),
        else_=func.jsonb_build_object(literal(LEGACY_KEY, Text), metadata),
    )


async def expire_pending_orders(
    session: AsyncSession,
    *,
    created_before: datetime,
    now: datetime,
    limit: int,
) -> list[str]:
    """Cancel up to `limit` pending orders created before `created_before`, in one
    statement. Their order numbers. Their coupon usages stay: a cancelled order's use
    simply stops counting.

    `SKIP LOCKED`: an order a payment (or its buyer) holds right now is left for the
    next run rather than waited for.
    """
    stale = (
        select(Order.id)
        .where(Order.status == OrderStatus.pending, Order.created_at < created_before)
        .order_by(Order.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stale_cte = stale.cte("stale")
    table = ORDER_TABLE
    statement = (
        table.update()
        .where(table.c.id == stale_cte.c.id)
        .values(
            status=OrderStatus.cancelled,
            updatedAt=now,
            metadata=_metadata_object(table.c.metadata).op("||")(
                cast(literal({"cancelReason": "expired"}, JSONB), JSONB)
            ),
        )
        .returning(table.c.orderNumber)
    )
    result = await session.execute(statement)
    return [row[0] for row in result.all()]


# --- an account's removal ----------------------------------------------------------------

_UNPAID_ORDERS_OF_USER = (
    ORDER_TABLE.c.userId == _USER_ID,
    # Not `in_`: an "expanding" parameter, which a DriverStatement cannot hold.
    or_(*(ORDER_TABLE.c.status == status for status in CANCELLABLE)),
    or_(*(ORDER_TABLE.c.paymentStatus == status for status in UNPAID)),
)
_LOCK_UNPAID_ORDERS_OF_USER_SQL = DriverStatement(
    select(ORDER_TABLE.c.id)
    .where(*_UNPAID_ORDERS_OF_USER)
    .order_by(ORDER_TABLE.c.id)
    .with_for_update()
)

_CANCEL_UNPAID_ORDERS_OF_USER_SQL = DriverStatement(
    ORDER_TABLE.update()
    .where(*_UNPAID_ORDERS_OF_USER)
    .values(
        status=OrderStatus.cancelled,
        updatedAt=bindparam("now", type_=ORDER_TABLE.c.updatedAt.type),
        metadata=_metadata_object(ORDER_TABLE.c.metadata).op("||")(
            cast(literal({"cancelReason": "account_removed"}, JSONB), JSONB)
        ),
    )
    .returning(ORDER_TABLE.c.orderNumber)
)


async def lock_unpaid_orders_of_user(writer: Writer, *, user_id: str) -> None:
    """Lock the user's unpaid pending and processing orders (FOR UPDATE, as a payment locks
    an order), before an account's removal locks the account's row. A payment completing
    one of them locks the order first and then, granting its enrollments, the account's
    row (the foreign-key check): taken in the other order, the two deadlocked. An order a
    payment holds is waited for; completed meanwhile, it is not one of these any more."""
    await _LOCK_UNPAID_ORDERS_OF_USER_SQL.fetch_in_transaction(writer, user_id=user_id)


async def cancel_unpaid_orders_of_user(writer: Writer, *, user_id: str, now: datetime) -> list[str]:
    """Cancel the user's unpaid pending and processing orders (`cancelReason:
    account_removed`), in one statement; their numbers. For an account being anonymised:
    nobody can sign in to it to use what a payment would buy, so a payment captured later
    is flagged for a refund (as after any cancellation) instead of completing the order."""
    rows = await _CANCEL_UNPAID_ORDERS_OF_USER_SQL.fetch_in_transaction(
        writer, user_id=user_id, now=now
    )
    return [row[0] for row in rows]
