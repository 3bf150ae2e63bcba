"""The floor: WORKLOAD.md's operations as plain SQL on raw asyncpg.

No ORM, no SQLAlchemy, no models: hand-written statements (prepared and cached
by asyncpg), the fewest round trips that still do the same work. The writes run in
a transaction, as the store's writing requests do; the reads run on a pooled
connection without one, one round trip each, as the store's read-only requests do.
`coursehub bench` measures these beside the store's own code and reports the
store's figures as ratios.

The work is the same as the store's: the same rows written, the same checks made
(a checkout still verifies that the courses are published, the coupon is valid and
unused by this buyer, and no course is already held or pending), with Decimal
amounts rounded half-up to the paisa.

This file stands alone (asyncpg and the standard library) so it can be read, or
run against a fixture by other tools, without the store's code.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg

PAISA = Decimal("0.01")
NUMBER_ATTEMPTS = 5  # order numbers tried before giving up, as the store's checkout
ORDER_NUMBER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

INSERT_USER = """
INSERT INTO "User" (id, email, username, password, role, "createdAt", "updatedAt")
VALUES ($1, $2, $3, $4, 'user', $5, $5)
"""
SELECT_USER_WITH_PROFILE = """
SELECT u.id, u.email, u.username, u.password, u.role, u."createdAt", u."updatedAt",
       p.id, p."firstName", p."lastName", p.bio, p."phoneNumber", p."createdAt", p."updatedAt"
FROM "User" u LEFT JOIN "UserProfile" p ON p."userId" = u.id
WHERE u.id = $1
"""
UPDATE_ROLE = """UPDATE "User" SET role = $2, "updatedAt" = $3 WHERE id = $1"""
# A user's dependants go first (RESTRICT foreign keys), in one statement.
DELETE_USER = """
WITH profile AS (DELETE FROM "UserProfile" WHERE "userId" = $1),
     preference AS (DELETE FROM "UserPreference" WHERE "userId" = $1),
     enrollment AS (DELETE FROM "CourseEnrollment" WHERE "userId" = $1)
DELETE FROM "User" WHERE id = $1
"""
# A user and their profile in one statement: the foreign key is checked at the end
# of the statement, when both rows exist.
INSERT_USER_WITH_PROFILE = """
WITH profile AS (
  INSERT INTO "UserProfile" (id, "userId", "firstName", "lastName", "createdAt", "updatedAt")
  VALUES ($6, $1, $7, $8, $5, $5)
)
INSERT INTO "User" (id, email, username, password, role, "createdAt", "updatedAt")
VALUES ($1, $2, $3, $4, 'user', $5, $5)
"""
CATALOG_PAGE = """
SELECT id, title, slug, price, duration, category, level, "isFeatured", thumbnail
FROM "Course"
WHERE "isPublished" AND category = $1
ORDER BY "createdAt" DESC, id DESC
LIMIT 20
"""
COURSE_BY_SLUG = """SELECT * FROM "Course" WHERE slug = $1 AND "isPublished" """
# Every rule about the buyer's own history is read after this lock, so two checkouts
# of one user can't both pass (the store's checkout takes the same lock).
LOCK_USER = """SELECT pg_advisory_xact_lock($1::integer, hashtext($2))"""
CHECKOUT_LOCK_CLASS = 0x4348  # any constant: it only keeps these locks apart from others
# The course ids are compared with a subquery's result, `= ANY ((SELECT $2::text[])::text[])`,
# not with the bare parameter: given the array itself, each custom plan sees its real length
# (two ids) while the generic plan assumes ten, so the generic plan always looks dearer and
# PostgreSQL plans the statement afresh at every checkout. As a subquery's result the
# length is unknown to both, and the generic plan is kept after five executions (as the
# store's checkout does it: coursehub/orders/repository.py, `_COURSE_IDS_UNSEEN`). The
# cast keeps the subquery a value: `ANY ((SELECT …))` would compare with its rows.
#
# The courses, each with whether the buyer already holds it or has it in a pending order.
_COURSES_AND_HOLDINGS = """
SELECT c.id, c.price,
  EXISTS (SELECT 1 FROM "CourseEnrollment" e
          WHERE e."userId" = $1 AND e."courseId" = c.id AND e.status = 'active') AS held,
  EXISTS (SELECT 1 FROM "OrderItem" i JOIN "Order" o ON o.id = i."orderId"
          WHERE o."userId" = $1 AND o.status IN ('pending', 'processing')
            AND i."courseId" = c.id) AS pending"""
_OF_THE_COURSES = """
WHERE c.id = ANY((SELECT $2::text[])::text[]) AND c."isPublished"
"""


def _coupon_for_buyer(buyer: str, code: str) -> str:
    """The coupon with `code`, with whether `buyer` has used it (`used`): a usage of theirs
    whose order is not cancelled, as the store counts it (a cancelled order gives its use
    back); the order's status is a per-usage probe of its primary key, as the store's
    (coupons/repository.py)."""
    return f"""SELECT id AS coupon_id, type, value, "maxDiscount", "minPurchase", "startDate",
  "endDate", "maxUses",
  EXISTS (SELECT 1 FROM "CouponUsage" u
          WHERE u."couponId" = "Coupon".id AND u."userId" = {buyer}
            AND (SELECT o.status FROM "Order" o WHERE o.id = u."orderId") <> 'cancelled')
    AS used
FROM "Coupon" WHERE code = {code}"""


CHECKOUT_COURSES = _COURSES_AND_HOLDINGS + '\nFROM "Course" c' + _OF_THE_COURSES
# With a coupon code: the same, each course's row followed by the coupon's columns (NULL
# when there is no such coupon), so that a checkout with a coupon makes no more round trips
# than one without; the coupon is one row, repeated on each course's.
CHECKOUT_COURSES_AND_COUPON = (
    _COURSES_AND_HOLDINGS
    + ',\n  coupon.*\nFROM "Course" c LEFT JOIN (\n'
    + _coupon_for_buyer("$1", "$3")
    + "\n) AS coupon ON true"
    + _OF_THE_COURSES
)
# The coupon read again with its row locked until the commit: for a coupon with a use
# limit (its uses are counted next), or for every coupon in `checkout_locking_coupon`.
LOCK_COUPON = _coupon_for_buyer("$2", "$1") + "\nFOR UPDATE\n"
COUNT_USES = """
SELECT count(*) FROM "CouponUsage" u JOIN "Order" o ON o.id = u."orderId"
WHERE u."couponId" = $1 AND o.status <> 'cancelled'
"""
# The order and its items in one statement. A taken order number (a rare random
# collision) writes nothing and returns no row; the caller retries with a new one, as the
# store does.
_NEW_ORDER_AND_ITEMS = """
WITH new_order AS (
  INSERT INTO "Order" (id, "orderNumber", "userId", status, amount, "originalAmount",
                       "paymentMethod", "paymentStatus", currency, "createdAt", "updatedAt")
  VALUES ($1, $2, $3, 'pending', $4, $5, $6, 'pending', 'INR', $7, $7)
  ON CONFLICT ("orderNumber") DO NOTHING
  RETURNING id
), new_items AS (
  INSERT INTO "OrderItem" (id, "orderId", "courseId", price, "createdAt")
  SELECT item.id, new_order.id, item.course, item.price, $7
  FROM new_order, unnest($8::text[], $9::text[], $10::numeric[]) AS item(id, course, price)
)"""
INSERT_ORDER = (
    _NEW_ORDER_AND_ITEMS
    + """
SELECT id FROM new_order
"""
)
# With a coupon: the order, its items and the coupon's usage, in the same one statement.
INSERT_ORDER_WITH_USAGE = (
    _NEW_ORDER_AND_ITEMS
    + """, new_usage AS (
  INSERT INTO "CouponUsage" (id, "couponId", "userId", "orderId", discount, "createdAt")
  SELECT $11, $12, $3, new_order.id, $13, $7 FROM new_order
)
SELECT id FROM new_order
"""
)


class CheckoutRefused(Exception):
    """A rule of checkout said no (the fixture is built so that it never does)."""


def now() -> datetime:
    # TIMESTAMP(3) without time zone, holding UTC, as Prisma stores it.
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


def to_paise(amount: Decimal) -> Decimal:
    return amount.quantize(PAISA, rounding=ROUND_HALF_UP)


def order_number(at: datetime) -> str:
    suffix = "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(6))
    return f"CH-{at:%Y%m%d}-{suffix}"


def discount_for(coupon: asyncpg.Record, original: Decimal) -> Decimal:
    if coupon["type"] == "percentage":
        discount = to_paise(original * coupon["value"] / 100)
        if coupon["maxDiscount"] is not None:
            discount = min(discount, coupon["maxDiscount"])
    else:
        discount = min(coupon["value"], original)
    return to_paise(discount)


class FloorOps:
    """The five operations, each `async def op(index)`, on an asyncpg pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        password_hash: str,
        categories: Sequence[str],
        course_ids: Sequence[str],
        course_slugs: Sequence[str],
        coupon_code: str,
        tag: str,
    ) -> None:
        self.pool = pool
        self.password_hash = password_hash
        self.categories = list(categories)
        self.course_ids = list(course_ids)
        self.course_slugs = list(course_slugs)
        self.coupon_code = coupon_code
        self.tag = tag  # keeps this run's e-mail addresses apart from any other's

    def _identity(self, kind: str, index: int) -> tuple[str, str]:
        name = f"f{kind}{self.tag}{index}"
        return f"{name}@bench.example.com", name

    async def _create_user(self, connection: asyncpg.Connection, kind: str, index: int) -> str:
        email, username = self._identity(kind, index)
        user_id = new_id()
        await connection.execute(INSERT_USER, user_id, email, username, self.password_hash, now())
        return user_id

    async def user_crud(self, index: int) -> None:
        """Create, read with profile, make admin, delete, as four requests: the writes each
        in a transaction, the read a single statement on a pooled connection."""
        pool = self.pool
        async with pool.acquire() as connection, connection.transaction():
            user_id = await self._create_user(connection, "u", index)
        async with pool.acquire() as connection:
            row = await connection.fetchrow(SELECT_USER_WITH_PROFILE, user_id)
            assert row is not None
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(UPDATE_ROLE, user_id, "admin", now())
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(DELETE_USER, user_id)

    async def tx_user_profile(self, index: int) -> None:
        email, username = self._identity("p", index)
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                INSERT_USER_WITH_PROFILE,
                new_id(),
                email,
                username,
                self.password_hash,
                now(),
                new_id(),
                "Bench",
                "User",
            )

    async def catalog_page(self, index: int) -> None:
        category = self.categories[index % len(self.categories)]
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(CATALOG_PAGE, category)
            assert rows

    async def course_by_slug(self, index: int) -> None:
        slug = self.course_slugs[index % len(self.course_slugs)]
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(COURSE_BY_SLUG, slug)
            assert row is not None

    def course_pair(self, index: int) -> list[str]:
        n = len(self.course_ids)
        return [self.course_ids[(2 * index) % n], self.course_ids[(2 * index + 1) % n]]

    async def checkout(
        self, index: int, *, coupon: bool = True, lock_every_coupon: bool = False
    ) -> None:
        """A new user buys two published courses, with BENCH10 unless `coupon` is False."""
        course_ids = self.course_pair(index)
        async with self.pool.acquire() as connection, connection.transaction():
            user_id = await self._create_user(connection, "c", index)
            await place_order(
                connection,
                user_id=user_id,
                course_ids=course_ids,
                coupon_code=self.coupon_code if coupon else None,
                lock_every_coupon=lock_every_coupon,
            )

    async def checkout_no_coupon(self, index: int) -> None:
        await self.checkout(index, coupon=False)

    async def checkout_locking_coupon(self, index: int) -> None:
        """WORKLOAD.md's wording taken literally: the coupon's row is locked even though
        BENCH10 has no use limit, so every checkout on it queues behind the last."""
        await self.checkout(index, lock_every_coupon=True)


async def place_order(
    connection: asyncpg.Connection,
    *,
    user_id: str,
    course_ids: list[str],
    coupon_code: str | None,
    payment_method: str | None = "card",
    lock_every_coupon: bool = False,
) -> str:
    """Checkout in plain SQL, inside the caller's transaction, with the store's locking:
    the buyer's advisory lock, and the coupon's row only when the coupon has a use limit
    (an unlimited one has nothing to count, and one use per buyer is guarded by the
    buyer's lock), or always with `lock_every_coupon`.

    Three statements with a coupon or without: the buyer's lock; the courses (with the
    coupon, when one is given); the order with its items (and the coupon's usage). Two
    more for a limited coupon (its row locked, its uses counted), one more with
    `lock_every_coupon` for an unlimited one."""
    await connection.execute(LOCK_USER, CHECKOUT_LOCK_CLASS, user_id)
    code = coupon_code.upper() if coupon_code is not None else None
    if code is None:
        courses = await connection.fetch(CHECKOUT_COURSES, user_id, course_ids)
    else:
        courses = await connection.fetch(CHECKOUT_COURSES_AND_COUPON, user_id, course_ids, code)
    if len(courses) != len(course_ids):
        raise CheckoutRefused("a course is missing or unpublished")
    if any(row["held"] or row["pending"] for row in courses):
        raise CheckoutRefused("a course is already held or pending")
    at = now()
    # Each item's price half-up to the paisa, and originalAmount their sum, as the store's.
    prices = {row["id"]: to_paise(row["price"]) for row in courses}
    original = sum((prices[c] for c in course_ids), Decimal(0))
    discount = Decimal(0)
    coupon: asyncpg.Record | None = None
    if code is not None:
        coupon = courses[0]  # the coupon's columns, the same on every course's row
        if coupon["coupon_id"] is None:
            raise CheckoutRefused("unknown coupon")
        if coupon["used"]:
            raise CheckoutRefused("coupon already used by this buyer")
        if not coupon["startDate"] <= at <= coupon["endDate"]:
            raise CheckoutRefused("coupon not valid now")
        if coupon["minPurchase"] is not None and original < coupon["minPurchase"]:
            raise CheckoutRefused("below the coupon's minimum purchase")
        if coupon["maxUses"] is not None or lock_every_coupon:
            # Locked (and read again) as late as possible: held until the commit.
            coupon = await connection.fetchrow(LOCK_COUPON, code, user_id)
            if coupon is None:
                raise CheckoutRefused("unknown coupon")
            if coupon["maxUses"] is not None:
                uses = await connection.fetchval(COUNT_USES, coupon["coupon_id"])
                if uses >= coupon["maxUses"]:
                    raise CheckoutRefused("coupon used up")
        discount = discount_for(coupon, original)
    amount = max(to_paise(original - discount), Decimal(0))
    order_id = new_id()
    item_ids = [new_id() for _ in course_ids]
    item_prices = [prices[c] for c in course_ids]
    # $3 … $10 of either statement; $11 … $13, the usage's, only with a coupon.
    columns = (user_id, amount, original, payment_method, at, item_ids, course_ids, item_prices)
    usage = () if coupon is None else (new_id(), coupon["coupon_id"], discount)
    statement = INSERT_ORDER if coupon is None else INSERT_ORDER_WITH_USAGE
    for _ in range(NUMBER_ATTEMPTS):
        inserted = await connection.fetchval(
            statement, order_id, order_number(at), *columns, *usage
        )
        if inserted is not None:
            return order_id
    raise CheckoutRefused("could not allocate an order number")


async def create_pool(connect_kwargs: dict[str, Any], *, size: int) -> asyncpg.Pool:
    """A pool of `size` connections that, like SQLAlchemy's, sends nothing on release:
    asyncpg's default reset would add a round trip per operation to the floor."""

    async def keep(connection: asyncpg.Connection) -> None:
        return None

    pool: asyncpg.Pool = await asyncpg.create_pool(
        min_size=size, max_size=size, reset=keep, **connect_kwargs
    )
    return pool
