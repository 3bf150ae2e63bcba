"""All of the coupons' SQL.

A CouponUsage row is written with its order and never deleted: it is the order's
history (which coupon, what discount). A use *counts* while its order is not
cancelled, so cancelling an order (by its buyer, a failed payment, or expiry) gives
the use back by itself, with no write here. Every count filters the usages on their
order's status (`COUNTING`): the usages are found through `CouponUsage_couponId_idx`
(or `_userId_idx`), each one's order through `Order_pkey`. Refunded orders are not
cancelled, so their uses count.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from asyncpg import Record
from sqlalchemy import Select, Text, bindparam, delete, exists, func, literal, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.pagination import TimeKeyset
from coursehub.core.sql import DriverStatement, Writer, as_loaded, aware
from coursehub.models import Coupon, CouponType, CouponUsage, Order, OrderStatus

# A usage counts (towards maxUses, "already used by you", the admins' figures) while its
# order is not cancelled. The order's status is a correlated subquery on Order's primary
# key, not a join: PostgreSQL keeps it a per-usage `Order_pkey` probe whatever it guesses
# of a coupon's number of usages, where a join may be planned as a hash join over a
# sequential scan of every order (and a prepared statement's generic plan would keep it).
_order_status = select(Order.status).where(Order.id == CouponUsage.order_id).scalar_subquery()
COUNTING = _order_status != OrderStatus.cancelled


@dataclass(frozen=True)
class CouponWithStats:
    """A coupon and what its uses add up to."""

    coupon: Coupon
    uses: int
    total_discount: Decimal


def _with_stats() -> Select[Coupon, int, Decimal]:
    # A lateral aggregate per coupon row: with a LIMIT it runs only for the rows served.
    # Uses and discount given count the orders not cancelled (refunded ones included).
    stats = (
        select(
            func.count().label("uses"),
            func.coalesce(func.sum(CouponUsage.discount), literal(Decimal(0))).label("total"),
        )
        .where(CouponUsage.coupon_id == Coupon.id, COUNTING)
        .lateral("stats")
    )
    return select(Coupon, stats.c.uses, stats.c.total).join(stats, true())


async def list_coupons(
    session: AsyncSession, *, after: TimeKeyset | None, limit: int
) -> list[CouponWithStats]:
    """Newest first, keyset on (createdAt, id) over `Coupon_createdAt_id_idx`; one query."""
    statement = _with_stats()
    if after is not None:
        statement = statement.where(tuple_(Coupon.created_at, Coupon.id) < after)
    statement = statement.order_by(Coupon.created_at.desc(), Coupon.id.desc()).limit(limit)
    rows = (await session.execute(statement)).all()
    return [CouponWithStats(coupon, uses, total) for coupon, uses, total in rows]


async def get_coupon_with_stats(session: AsyncSession, coupon_id: str) -> CouponWithStats | None:
    row = (await session.execute(_with_stats().where(Coupon.id == coupon_id))).one_or_none()
    return None if row is None else CouponWithStats(row[0], row[1], row[2])


async def get_coupon(session: AsyncSession, coupon_id: str) -> Coupon | None:
    return await session.get(Coupon, coupon_id)


# Built once, with named parameters, so checkout reuses its compiled form.
# "Already used by you": a usage of the user's whose order is not cancelled; a user whose
# order was cancelled may use the coupon again (a second usage row, for the new order).
# Whether the user has used the coupon: a usage of theirs on an order not cancelled.
_USED_BY_USER = (
    select(CouponUsage.id)
    .where(
        CouponUsage.coupon_id == Coupon.id,
        CouponUsage.user_id == bindparam("user_id", type_=Text),
        COUNTING,
    )
    .exists()
    .label("used_by_user")
)

# The coupon by code and `_USED_BY_USER`: the columns `coupon_from_row` maps, in order.
# Checkout reads it in the same statement as the courses (orders/repository.py).
COUPON_FOR_USER = select(
    Coupon.id,
    Coupon.code,
    Coupon.type,
    Coupon.value,
    Coupon.max_discount,
    Coupon.min_purchase,
    Coupon.description,
    Coupon.start_date,
    Coupon.end_date,
    Coupon.max_uses,
    Coupon.created_by,
    Coupon.created_at,
    Coupon.updated_at,
    _USED_BY_USER,
).where(Coupon.code == bindparam("code", type_=Text))
# On the request's connection inside its transaction (core/sql.py): no ORM loading.
_COUPON_FOR_USER_SQL = DriverStatement(COUPON_FOR_USER)


def coupon_from_row(owner: Writer, row: Record, at: int = 0) -> tuple[Coupon, bool] | None:
    """The coupon and whether the user holds a use of it that counts, from a row holding
    `COUPON_FOR_USER`'s columns from index `at` on; None if they are NULL (no such coupon,
    in an outer join)."""
    if row[at] is None:
        return None
    coupon = as_loaded(
        owner,
        Coupon,
        id=row[at],
        code=row[at + 1],
        type=CouponType(row[at + 2]),
        value=row[at + 3],
        max_discount=row[at + 4],
        min_purchase=row[at + 5],
        description=row[at + 6],
        start_date=aware(row[at + 7]),
        end_date=aware(row[at + 8]),
        max_uses=row[at + 9],
        created_by=row[at + 10],
        created_at=aware(row[at + 11]),
        updated_at=aware(row[at + 12]),
    )
    return coupon, bool(row[at + 13])


LOCK_COUPON = (
    select(Coupon.max_uses)
    .where(Coupon.id == bindparam("coupon_id", type_=Text))
    .with_for_update(key_share=True)
)

COUNT_USES = select(func.count()).where(
    CouponUsage.coupon_id == bindparam("coupon_id", type_=Text), COUNTING
)
_LOCK_COUPON_SQL = DriverStatement(LOCK_COUPON)
_COUNT_USES_SQL = DriverStatement(COUNT_USES)


async def find_coupon_for_user(
    writer: Writer, *, code: str, user_id: str
) -> tuple[Coupon, bool] | None:
    """The coupon with this (upper-case) code and whether the user holds a use of it that
    counts (an order with it that is not cancelled), in one query. None if there is no such
    coupon. Race-free only after checkout's per-user lock."""
    rows = await _COUPON_FOR_USER_SQL.fetch_in_transaction(writer, code=code, user_id=user_id)
    return coupon_from_row(writer, rows[0]) if rows else None


async def lock_coupon_for_use(writer: Writer, coupon_id: str) -> tuple[bool, int | None]:
    """Lock the coupon's row until the transaction ends and read its current maxUses.

    (found, maxUses). `FOR NO KEY UPDATE`: it queues checkouts of the same limited
    coupon (and admin edits) behind one another, yet not the foreign-key checks of
    usage inserts, which take only KEY SHARE.
    """
    rows = await _LOCK_COUPON_SQL.fetch_in_transaction(writer, coupon_id=coupon_id)
    return (True, rows[0][0]) if rows else (False, None)


async def count_uses(writer: Writer, coupon_id: str) -> int:
    """The coupon's uses by orders that are not cancelled. Race-free only under
    `lock_coupon_for_use`: a use can start counting only by a checkout holding that lock
    (a cancelled order never becomes anything else), so a count taken under the lock can
    only be too high (an order cancelled meanwhile), never too low."""
    rows = await _COUNT_USES_SQL.fetch_in_transaction(writer, coupon_id=coupon_id)
    return int(rows[0][0])


async def is_coupon_used(session: AsyncSession, coupon_id: str) -> bool:
    """Whether any order, cancelled or not, ever used the coupon (its usage rows are that
    order's history, which deleting the coupon would have to rewrite)."""
    statement = select(exists().where(CouponUsage.coupon_id == coupon_id))
    return bool((await session.execute(statement)).scalar_one())


async def code_taken(session: AsyncSession, code: str, *, except_id: str | None = None) -> bool:
    condition: list[Any] = [Coupon.code == code]
    if except_id is not None:
        condition.append(Coupon.id != except_id)
    return bool((await session.execute(select(exists().where(*condition)))).scalar_one())


async def add_coupon(session: AsyncSession, coupon: Coupon) -> None:
    """Insert inside a savepoint, so a code taken meanwhile undoes only this insert."""
    async with session.begin_nested():
        session.add(coupon)
        await session.flush()


async def flush_coupon(session: AsyncSession) -> None:
    async with session.begin_nested():
        await session.flush()


async def delete_coupon(session: AsyncSession, coupon_id: str) -> bool:
    """Delete inside a savepoint: the foreign key (RESTRICT) still refuses a coupon whose
    first use arrived after the caller's check. True if a row was deleted."""
    async with session.begin_nested():
        result = await session.execute(delete(Coupon).where(Coupon.id == coupon_id))
    return bool(getattr(result, "rowcount", 0))
