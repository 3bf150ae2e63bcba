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

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from asyncpg import Record
from sqlalchemy import (
    Integer,
    Select,
    Text,
    bindparam,
    delete,
    exists,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.locks import COUPON_CLAIM_LOCK_CLASS
from coursehub.core.pagination import TimeKeyset
from coursehub.core.sql import DriverStatement, Writer, as_refreshed, aware, in_utc
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


async def get_coupon(
    session: AsyncSession, coupon_id: str, *, for_update: bool = False
) -> Coupon | None:
    """The coupon; `for_update`: its row locked FOR UPDATE until the transaction ends, which
    waits for the checkouts holding it FOR KEY SHARE (orders/repository.py, the order's
    insert) and makes those that come after wait for this change."""
    return await session.get(Coupon, coupon_id, with_for_update=for_update or None)


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

# The coupon by code and `_USED_BY_USER`: the columns `coupon_from_row` maps, in order
# (POST /coupons/validate; checkout reads fewer, `CHECKOUT_COUPON`).
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


def coupon_from_row(owner: Writer, row: Record) -> tuple[Coupon, bool]:
    """The coupon and whether the user holds a use of it that counts, from a row of
    `COUPON_FOR_USER`. A coupon the session already holds is given the row's terms
    (`as_refreshed`): the row is newer than whatever the session read before."""
    coupon = as_refreshed(
        owner,
        Coupon,
        id=row[0],
        code=row[1],
        type=CouponType(row[2]),
        value=row[3],
        max_discount=row[4],
        min_purchase=row[5],
        description=row[6],
        start_date=aware(row[7]),
        end_date=aware(row[8]),
        max_uses=row[9],
        created_by=row[10],
        created_at=aware(row[11]),
        updated_at=aware(row[12]),
    )
    return coupon, bool(row[13])


class CouponOffer(NamedTuple):
    """A coupon as checkout reads it: what its rules and the order's answer need (its
    window, discount, limit and code), not an ORM object, which checkout never changes."""

    id: str
    code: str
    max_uses: int | None
    type: CouponType
    value: Decimal
    max_discount: Decimal | None
    min_purchase: Decimal | None
    start_date: datetime
    end_date: datetime

    def with_terms(self, terms: CouponTerms) -> CouponOffer:
        """This coupon with `terms` (read again under its claim, after an admin's change)."""
        return self._replace(**asdict(terms))


# The coupon by code, as checkout reads it beside the courses (orders/repository.py):
# `CouponOffer`'s columns, then `_USED_BY_USER`.
CHECKOUT_COUPON = select(
    Coupon.id,
    Coupon.code,
    Coupon.max_uses,
    Coupon.type,
    Coupon.value,
    Coupon.max_discount,
    Coupon.min_purchase,
    in_utc(Coupon.start_date),
    in_utc(Coupon.end_date),
    _USED_BY_USER,
).where(Coupon.code == bindparam("code", type_=Text))


def offer_from_row(row: Record, at: int) -> tuple[CouponOffer, bool] | None:
    """The coupon and whether the user holds a use of it that counts, from a row holding
    `CHECKOUT_COUPON`'s columns from index `at` on; None if they are NULL (no such coupon,
    in an outer join)."""
    if row[at] is None:
        return None
    offer = CouponOffer(
        row[at],
        row[at + 1],
        row[at + 2],
        CouponType(row[at + 3]),
        row[at + 4],
        row[at + 5],
        row[at + 6],
        row[at + 7],
        row[at + 8],
    )
    return offer, bool(row[at + 9])


# --- claiming a use of a limited coupon -----------------------------------------------
#
# A use of a coupon with maxUses is claimed at checkout under a lock on the coupon: an
# advisory lock of its own (COUPON_CLAIM_LOCK_CLASS, the coupon's id), held until the
# transaction ends. Its counts are taken by later statements, so on snapshots taken after
# the lock was granted (READ COMMITTED: one snapshot a statement), and a transaction's locks
# are released only after its commit is visible: whoever gets the lock sees the uses of
# those who held it before.
#
# - Far from the limit the lock is SHARED: checkouts of the coupon do not wait for one
#   another. The checkout counts ALL the coupon's usages (cancelled orders' too, so never
#   too few; index-only, no order read) and goes on if that count + K <= maxUses, where K
#   is the most transactions that can be in progress at once on the server, whichever
#   process runs them: its sessions (max_connections), background workers
#   (max_worker_processes), WAL senders (max_wal_senders, which logical replication's can
#   run SQL on) and prepared transactions (max_prepared_transactions). Autovacuum's workers
#   never write a row.
# - For its last K uses the lock is EXCLUSIVE and the uses are counted exactly. Admins take
#   it too to change or delete a coupon: the change waits for the claims in progress, and
#   every claim after it sees the change: it counts against the new maxUses, and the
#   coupon's terms (window, discount), read again with the claim, replace those the
#   checkout read a moment before (orders/checkout.py).
#
# Why no use is sold beyond maxUses: take Z, of the checkouts that commit a use, the one
# whose count was taken last. Every other one either committed before that count (Z saw
# its use) or was still in progress then. If Z held the exclusive lock, none was in
# progress (each holder before Z committed before Z had the lock; each after Z counts
# after Z). If Z held the shared lock, those in progress are at most K - 1 others, and Z
# went on only if what it saw + K <= maxUses. Either way the uses <= maxUses.
#
# An advisory lock rather than the coupon's row, measured: under `FOR SHARE` on the row,
# an admin's UPDATE waited until no claim at all was in progress (new shared lockers of a
# row go ahead of a waiting writer: 8 s and 7,478 claims, then the statement timeout),
# and every claim created a multixact listing every holder. PostgreSQL's lock manager
# queues a shared request behind a waiting exclusive one, and keeps no multixacts.
#
# A shared claim that finds itself too near the limit must give its lock back before it
# asks for the exclusive one (two holders both upgrading would deadlock): it is taken
# inside a savepoint, and rolling back to the savepoint releases it. On success the
# savepoint is left open (releasing it would cost a round trip): the order is written in
# that subtransaction, and commits or rolls back with the whole.
CLAIM_SAVEPOINT = "coursehub_coupon_claim"
_SAVEPOINT_SQL = DriverStatement(text(f"SAVEPOINT {CLAIM_SAVEPOINT}"))
_ROLLBACK_TO_SAVEPOINT_SQL = DriverStatement(text(f"ROLLBACK TO SAVEPOINT {CLAIM_SAVEPOINT}"))
_COUPON_ID = bindparam("coupon_id", type_=Text)
_CLAIMS_KEY = (COUPON_CLAIM_LOCK_CLASS, func.hashtext(_COUPON_ID))
LOCK_CLAIMS_SHARED = select(func.pg_advisory_xact_lock_shared(*_CLAIMS_KEY))
LOCK_CLAIMS = select(func.pg_advisory_xact_lock(*_CLAIMS_KEY))
# The most transactions that can be in progress at once on the server (K above).
IN_PROGRESS_SLOTS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
)
_slots = [
    func.current_setting(literal_column(f"'{name}'")).cast(Integer) for name in IN_PROGRESS_SLOTS
]
IN_PROGRESS_BOUND = sum(_slots[1:], start=_slots[0])


def _usages_up_to(limit: Any) -> Any:
    """The coupon's usages, cancelled orders' included, counted up to `limit`: an
    index-only scan of "CouponUsage_couponId_idx" that stops there."""
    usages = (
        select(CouponUsage.coupon_id)
        .where(CouponUsage.coupon_id == Coupon.id)
        .limit(limit)
        .correlate(Coupon)
        .subquery("usages")
    )
    return select(func.count()).select_from(usages).scalar_subquery()


@dataclass(frozen=True)
class CouponTerms:
    """A coupon's window and discount: checked when checkout reads the coupon, read again
    with its claim, after any admin's change the claim waited for."""

    type: CouponType
    value: Decimal
    max_discount: Decimal | None
    min_purchase: Decimal | None
    start_date: datetime
    end_date: datetime

    @classmethod
    def of(cls, coupon: Coupon | CouponOffer) -> CouponTerms:
        return cls(
            coupon.type,
            coupon.value,
            coupon.max_discount,
            coupon.min_purchase,
            coupon.start_date,
            coupon.end_date,
        )


_TERMS = (
    Coupon.type,
    Coupon.value,
    Coupon.max_discount,
    Coupon.min_purchase,
    Coupon.start_date,
    Coupon.end_date,
)


def _terms_from_row(row: Record, at: int) -> CouponTerms:
    return CouponTerms(
        CouponType(row[at]),
        row[at + 1],
        row[at + 2],
        row[at + 3],
        aware(row[at + 4]),
        aware(row[at + 5]),
    )


# The coupon's limit, K, its usages up to maxUses - K + 1 (whether a shared claim fits),
# and its terms.
SHARED_CLAIM_ROOM = select(
    Coupon.max_uses,
    IN_PROGRESS_BOUND.label("bound"),
    _usages_up_to(func.greatest(Coupon.max_uses - IN_PROGRESS_BOUND + 1, 0)).label("usages"),
    *_TERMS,
).where(Coupon.id == _COUPON_ID)
# The coupon's limit, its usages up to maxUses (fewer than maxUses: a use is free), and its
# terms.
CLAIM_ROOM = select(
    # greatest: a negative maxUses (no CHECK forbids one in adopted data) is used up, not
    # a negative LIMIT's error.
    Coupon.max_uses,
    _usages_up_to(func.greatest(func.coalesce(Coupon.max_uses, 0), 0)).label("usages"),
    *_TERMS,
).where(Coupon.id == _COUPON_ID)
COUNT_USES = select(func.count()).where(CouponUsage.coupon_id == _COUPON_ID, COUNTING)
_LOCK_CLAIMS_SHARED_SQL = DriverStatement(LOCK_CLAIMS_SHARED)
_LOCK_CLAIMS_SQL = DriverStatement(LOCK_CLAIMS)
_SHARED_CLAIM_ROOM_SQL = DriverStatement(SHARED_CLAIM_ROOM)
_CLAIM_ROOM_SQL = DriverStatement(CLAIM_ROOM)
_COUNT_USES_SQL = DriverStatement(COUNT_USES)


@dataclass(frozen=True)
class SharedClaim:
    """What `claim_use_shared` found: `claimed` (a use is this checkout's, under the shared
    lock), or not, then `found` (False: no such coupon) and the server's bound K, which
    tells which coupons are worth trying next time (a maxUses above it)."""

    claimed: bool
    found: bool
    bound: int | None
    terms: CouponTerms | None = None  # as read under the lock, when claimed


async def claim_use_shared(writer: Writer, coupon_id: str) -> SharedClaim:
    """Claim a use of a limited coupon far from its limit under the shared lock (see above),
    held until the transaction ends. Not claimed: nothing is held (the savepoint rolled
    back), and the caller takes the exclusive way."""
    await _SAVEPOINT_SQL.fetch_in_transaction(writer)
    await _LOCK_CLAIMS_SHARED_SQL.fetch_in_transaction(writer, coupon_id=coupon_id)
    rows = await _SHARED_CLAIM_ROOM_SQL.fetch_in_transaction(writer, coupon_id=coupon_id)
    if rows:
        max_uses, bound, usages = rows[0][0], int(rows[0][1]), int(rows[0][2])
        # maxUses None: the limit was removed meanwhile, nothing to count.
        if max_uses is None or usages + bound <= max_uses:
            terms = _terms_from_row(rows[0], 3)
            return SharedClaim(claimed=True, found=True, bound=bound, terms=terms)
    await _ROLLBACK_TO_SAVEPOINT_SQL.fetch_in_transaction(writer)
    return SharedClaim(claimed=False, found=bool(rows), bound=int(rows[0][1]) if rows else None)


@dataclass(frozen=True)
class ClaimRoom:
    """Under the exclusive lock: whether the coupon exists, its current maxUses, its
    usages (cancelled orders' too) counted up to maxUses, and its terms."""

    found: bool
    max_uses: int | None
    usages: int
    terms: CouponTerms | None


async def lock_claims(writer: Writer, coupon_id: str) -> None:
    """Take the coupon's claim lock exclusively, until the transaction ends: for a
    checkout claiming one of its last uses, and for an admin changing or deleting it."""
    await _LOCK_CLAIMS_SQL.fetch_in_transaction(writer, coupon_id=coupon_id)


async def claim_room(writer: Writer, coupon_id: str) -> ClaimRoom:
    """The coupon's limit and usages, read after `lock_claims` (see `ClaimRoom`)."""
    rows = await _CLAIM_ROOM_SQL.fetch_in_transaction(writer, coupon_id=coupon_id)
    if not rows:
        return ClaimRoom(found=False, max_uses=None, usages=0, terms=None)
    row = rows[0]
    return ClaimRoom(found=True, max_uses=row[0], usages=int(row[1]), terms=_terms_from_row(row, 2))


async def find_coupon_for_user(
    writer: Writer, *, code: str, user_id: str
) -> tuple[Coupon, bool] | None:
    """The coupon with this (upper-case) code and whether the user holds a use of it that
    counts (an order with it that is not cancelled), in one query. None if there is no such
    coupon. Race-free only after checkout's per-user lock."""
    rows = await _COUPON_FOR_USER_SQL.fetch_in_transaction(writer, code=code, user_id=user_id)
    return coupon_from_row(writer, rows[0]) if rows else None


async def count_uses(writer: Writer, coupon_id: str) -> int:
    """The coupon's uses by orders that are not cancelled. Race-free only under
    `lock_claims`: a use can start counting only by a checkout holding the claim lock
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
