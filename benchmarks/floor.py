"""The floor: WORKLOAD.md's operations as plain SQL on raw asyncpg.

No ORM, no SQLAlchemy, no models: hand-written statements (prepared and cached
by asyncpg), the fewest round trips that still do the same work, each operation
inside a transaction as the store's requests are. `coursehub bench` measures
these beside the store's own code and reports the store's figures as ratios.

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
CHECKOUT_COURSES = """
SELECT id, price FROM "Course" WHERE id = ANY($1::text[]) AND "isPublished"
"""
LOCK_COUPON = """
SELECT id, type, value, "maxDiscount", "minPurchase", "startDate", "endDate", "maxUses"
FROM "Coupon" WHERE code = $1
FOR UPDATE
"""
# Everything checkout must rule out, in one round trip: a course already held or
# in a pending order, the coupon already used by this buyer, and its uses so far
# (orders not cancelled) when it has a limit.
CHECKOUT_CHECKS = """
SELECT
  EXISTS (SELECT 1 FROM "CourseEnrollment"
          WHERE "userId" = $1 AND "courseId" = ANY($2::text[]) AND status = 'active'),
  EXISTS (SELECT 1 FROM "OrderItem" i JOIN "Order" o ON o.id = i."orderId"
          WHERE o."userId" = $1 AND o.status = 'pending' AND i."courseId" = ANY($2::text[])),
  EXISTS (SELECT 1 FROM "CouponUsage" WHERE "couponId" = $3 AND "userId" = $1),
  CASE WHEN $4::boolean THEN
    (SELECT count(*) FROM "CouponUsage" cu JOIN "Order" o ON o.id = cu."orderId"
     WHERE cu."couponId" = $3 AND o.status <> 'cancelled')
  END
"""
INSERT_ORDER = """
INSERT INTO "Order" (id, "orderNumber", "userId", status, amount, "originalAmount",
                     "paymentMethod", "paymentStatus", currency, "createdAt", "updatedAt")
VALUES ($1, $2, $3, 'pending', $4, $5, $6, 'pending', 'INR', $7, $7)
"""
INSERT_ITEMS = """
INSERT INTO "OrderItem" (id, "orderId", "courseId", price, "createdAt")
SELECT item.id, $1, item.course, item.price, $2
FROM unnest($3::text[], $4::text[], $5::numeric[]) AS item(id, course, price)
"""
INSERT_USAGE = """
INSERT INTO "CouponUsage" (id, "couponId", "userId", "orderId", discount, "createdAt")
VALUES ($1, $2, $3, $4, $5, $6)
"""


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
        """Create, read with profile, make admin, delete: four transactions, as four requests."""
        pool = self.pool
        async with pool.acquire() as connection, connection.transaction():
            user_id = await self._create_user(connection, "u", index)
        async with pool.acquire() as connection, connection.transaction():
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
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(CATALOG_PAGE, category)
            assert rows

    async def course_by_slug(self, index: int) -> None:
        slug = self.course_slugs[index % len(self.course_slugs)]
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(COURSE_BY_SLUG, slug)
            assert row is not None

    def course_pair(self, index: int) -> list[str]:
        n = len(self.course_ids)
        return [self.course_ids[(2 * index) % n], self.course_ids[(2 * index + 1) % n]]

    async def checkout(self, index: int, *, coupon: bool = True) -> None:
        """A new user buys two published courses, with BENCH10 unless `coupon` is False."""
        course_ids = self.course_pair(index)
        async with self.pool.acquire() as connection, connection.transaction():
            user_id = await self._create_user(connection, "c", index)
            await place_order(
                connection,
                user_id=user_id,
                course_ids=course_ids,
                coupon_code=self.coupon_code if coupon else None,
            )

    async def checkout_no_coupon(self, index: int) -> None:
        await self.checkout(index, coupon=False)


async def place_order(
    connection: asyncpg.Connection,
    *,
    user_id: str,
    course_ids: list[str],
    coupon_code: str | None,
    payment_method: str | None = "card",
) -> str:
    """Checkout in plain SQL: 4 round trips without a coupon, 6 with one."""
    courses = await connection.fetch(CHECKOUT_COURSES, course_ids)
    if len(courses) != len(course_ids):
        raise CheckoutRefused("a course is missing or unpublished")
    coupon: Any = None
    if coupon_code is not None:
        coupon = await connection.fetchrow(LOCK_COUPON, coupon_code.upper())
        if coupon is None:
            raise CheckoutRefused("unknown coupon")
    held, pending, used, uses = await connection.fetchrow(
        CHECKOUT_CHECKS,
        user_id,
        course_ids,
        coupon["id"] if coupon is not None else None,
        coupon is not None and coupon["maxUses"] is not None,
    )
    if held or pending:
        raise CheckoutRefused("a course is already held or pending")
    at = now()
    prices = {row["id"]: row["price"] for row in courses}
    original = to_paise(sum((prices[c] for c in course_ids), Decimal(0)))
    discount = Decimal(0)
    if coupon is not None:
        if used:
            raise CheckoutRefused("coupon already used by this buyer")
        if not coupon["startDate"] <= at <= coupon["endDate"]:
            raise CheckoutRefused("coupon not valid now")
        if coupon["minPurchase"] is not None and original < coupon["minPurchase"]:
            raise CheckoutRefused("below the coupon's minimum purchase")
        if coupon["maxUses"] is not None and uses >= coupon["maxUses"]:
            raise CheckoutRefused("coupon used up")
        discount = discount_for(coupon, original)
    amount = max(to_paise(original - discount), Decimal(0))
    order_id = new_id()
    await connection.execute(
        INSERT_ORDER, order_id, order_number(at), user_id, amount, original, payment_method, at
    )
    await connection.execute(
        INSERT_ITEMS,
        order_id,
        at,
        [new_id() for _ in course_ids],
        course_ids,
        [prices[c] for c in course_ids],
    )
    if coupon is not None:
        await connection.execute(
            INSERT_USAGE, new_id(), coupon["id"], user_id, order_id, discount, at
        )
    return order_id


async def create_pool(connect_kwargs: dict[str, Any], *, size: int) -> asyncpg.Pool:
    """A pool of `size` connections that, like SQLAlchemy's, sends nothing on release:
    asyncpg's default reset would add a round trip per operation to the floor."""

    async def keep(connection: asyncpg.Connection) -> None:
        return None

    pool: asyncpg.Pool = await asyncpg.create_pool(
        min_size=size, max_size=size, reset=keep, **connect_kwargs
    )
    return pool
