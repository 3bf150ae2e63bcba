"""All of the coupons' SQL.

A coupon's uses are its CouponUsage rows: one per order that is not cancelled.
Cancelling an order (by its buyer, a failed payment, or expiry) deletes its usage
row (`release_usage`), so counting uses is `COUNT(*)` on `CouponUsage_couponId_idx`
and a released use is free again at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, Text, bindparam, delete, exists, func, literal, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import Coupon, CouponUsage


@dataclass(frozen=True)
class CouponWithStats:
    """A coupon and what its uses add up to."""

    coupon: Coupon
    uses: int
    total_discount: Decimal


@dataclass(frozen=True)
class ReleasedUsage:
    coupon_id: str
    code: str
    discount: Decimal


def _with_stats() -> Select[Coupon, int, Decimal]:
    # A lateral aggregate per coupon row: with a LIMIT it runs only for the rows served.
    stats = (
        select(
            func.count().label("uses"),
            func.coalesce(func.sum(CouponUsage.discount), literal(Decimal(0))).label("total"),
        )
        .where(CouponUsage.coupon_id == Coupon.id)
        .lateral("stats")
    )
    return select(Coupon, stats.c.uses, stats.c.total).join(stats, true())


async def list_coupons(
    session: AsyncSession, *, after: tuple[datetime, str] | None, limit: int
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
COUPON_FOR_USER = select(
    Coupon,
    exists()
    .where(
        CouponUsage.coupon_id == Coupon.id,
        CouponUsage.user_id == bindparam("user_id", type_=Text),
    )
    .label("used_by_user"),
).where(Coupon.code == bindparam("code", type_=Text))

LOCK_COUPON = (
    select(Coupon.max_uses)
    .where(Coupon.id == bindparam("coupon_id", type_=Text))
    .with_for_update(key_share=True)
)

COUNT_USES = select(func.count()).where(CouponUsage.coupon_id == bindparam("coupon_id", type_=Text))


async def find_coupon_for_user(
    session: AsyncSession, *, code: str, user_id: str
) -> tuple[Coupon, bool] | None:
    """The coupon with this (upper-case) code and whether the user holds a use of it, in one
    query. None if there is no such coupon."""
    result = await session.execute(COUPON_FOR_USER, {"code": code, "user_id": user_id})
    row = result.one_or_none()
    return None if row is None else (row[0], bool(row[1]))


async def lock_coupon_for_use(session: AsyncSession, coupon_id: str) -> tuple[bool, int | None]:
    """Lock the coupon's row until the transaction ends and read its current maxUses.

    (found, maxUses). `FOR NO KEY UPDATE`: it queues checkouts of the same limited
    coupon (and admin edits) behind one another, yet not the foreign-key checks of
    usage inserts, which take only KEY SHARE.
    """
    row = (await session.execute(LOCK_COUPON, {"coupon_id": coupon_id})).one_or_none()
    return (False, None) if row is None else (True, row[0])


async def count_uses(session: AsyncSession, coupon_id: str) -> int:
    return int((await session.execute(COUNT_USES, {"coupon_id": coupon_id})).scalar_one())


async def is_coupon_used(session: AsyncSession, coupon_id: str) -> bool:
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


async def release_usage(session: AsyncSession, *, order_id: str) -> ReleasedUsage | None:
    """Delete the order's usage row (one statement); what it was, or None if it had none."""
    statement = (
        delete(CouponUsage)
        .where(CouponUsage.order_id == order_id, CouponUsage.coupon_id == Coupon.id)
        .returning(CouponUsage.coupon_id, Coupon.code, CouponUsage.discount)
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else ReleasedUsage(row[0], row[1], row[2])
