"""`coursehub db seed --users N --courses N --orders N`: a large dataset for benchmarks.

Rows are made by `bulk_rows.BulkGenerator` and written with COPY (asyncpg's
`copy_records_to_table`, binary), chunk by chunk, in ONE transaction: a run that
fails or is interrupted leaves nothing behind. Every password is the same
precomputed argon2id hash of `BULK_PASSWORD` (hashing a million passwords would
take hours and prove nothing). Each run draws a fresh 5-character tag that goes
into every email, username, slug, coupon code and order number, so runs can be
repeated on the same database without colliding.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from rich.progress import Progress, TaskID

from coursehub.core.console import console, err_console
from coursehub.core.database import analyze_after_commit
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import StoreError
from coursehub.core.money import to_paise
from coursehub.core.security import hash_password_off_loop
from coursehub.db import bulk_rows
from coursehub.db.bulk_rows import (
    BulkCoupon,
    BulkGenerator,
    BulkUser,
    OrderChunk,
    PoolCourse,
    Row,
)
from coursehub.db.progress import rows_progress

BULK_PASSWORD = "coursehub-bench"  # every bulk user's password, for load tests that sign in
USER_CHUNK = 10_000
COURSE_CHUNK = 5_000
ORDER_CHUNK = 5_000
COUPONS_PER_RUN = 12
BUYERS_PER_ORDER = 4  # users made for orders when none are asked for: one per 4 orders
TAG_ALPHABET = string.ascii_lowercase + string.digits
TAG_LENGTH = 5

TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("users", "User", bulk_rows.USER_COLUMNS),
    ("profiles", "UserProfile", bulk_rows.PROFILE_COLUMNS),
    ("preferences", "UserPreference", bulk_rows.PREFERENCE_COLUMNS),
    ("courses", "Course", bulk_rows.COURSE_COLUMNS),
    ("coupons", "Coupon", bulk_rows.COUPON_COLUMNS),
    ("orders", "Order", bulk_rows.ORDER_COLUMNS),
    ("order items", "OrderItem", bulk_rows.ITEM_COLUMNS),
    ("coupon usages", "CouponUsage", bulk_rows.USAGE_COLUMNS),
    ("enrollments", "CourseEnrollment", bulk_rows.ENROLLMENT_COLUMNS),
)
_TABLE_OF = {label: (table, columns) for label, table, columns in TABLES}


class BulkSeedError(StoreError):
    status = 500
    code = "bulk_seed_failed"
    title = "Bulk seeding failed"


@dataclass(frozen=True)
class BulkPlan:
    users: int
    courses: int
    orders: int
    random_seed: int | None = None  # for a reproducible dataset (ids and tag stay random)
    show_progress: bool = True


@dataclass
class BulkReport:
    tag: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    buyers_added: int = 0
    warning: str | None = None  # written, but something after it failed (ANALYZE)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds else 0.0


class _Writer:
    """COPYs rows into one table after another and keeps the counts and the bars."""

    def __init__(
        self, connection: Any, schema: str, progress: Progress, report: BulkReport, started: float
    ):
        self.connection = connection
        self.schema = schema
        self.progress = progress
        self.report = report
        self.started = started
        self.tasks: dict[str, TaskID] = {}

    def plan(self, label: str, total: int | None) -> None:
        self.tasks[label] = self.progress.add_task(label, total=total, rate="")
        self.report.rows.setdefault(label, 0)

    async def write(self, label: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        table, columns = _TABLE_OF[label]
        await self.connection.copy_records_to_table(
            table, records=rows, columns=list(columns), schema_name=self.schema
        )
        self.report.rows[label] += len(rows)
        elapsed = time.perf_counter() - self.started
        rate = f"{self.report.total_rows / elapsed:,.0f} rows/s" if elapsed else ""
        self.progress.update(self.tasks[label], advance=len(rows), rate=rate)


async def _fresh_tag(connection: Any, rng: secrets.SystemRandom) -> str:
    """A tag no earlier run used. A false match (a real word in a slug) only costs a retry."""
    for _ in range(20):
        tag = rng.choice(string.ascii_lowercase) + "".join(
            rng.choice(TAG_ALPHABET) for _ in range(TAG_LENGTH - 1)
        )
        used = await connection.fetchval(
            'SELECT EXISTS (SELECT 1 FROM "User" WHERE "email" LIKE $1) '
            'OR EXISTS (SELECT 1 FROM "Course" WHERE "slug" LIKE $2) '
            'OR EXISTS (SELECT 1 FROM "Order" WHERE "orderNumber" LIKE $3) '
            'OR EXISTS (SELECT 1 FROM "Coupon" WHERE "code" LIKE $4)',
            f"%+{tag}.%",
            f"%-{tag}-%",
            f"CH-________-{tag.upper()}%",
            f"BULK{tag.upper()}%",
        )
        if not used:
            return tag
    raise BulkSeedError("could not find an unused tag for this bulk run; try again")


async def _published_courses(connection: Any) -> list[PoolCourse]:
    rows = await connection.fetch(
        'SELECT "id", "price", "createdAt" FROM "Course" WHERE "isPublished"'
    )
    return [PoolCourse(r["id"], to_paise(r["price"]), r["createdAt"]) for r in rows]


async def seed_bulk(config: DatabaseConfig, plan: BulkPlan) -> BulkReport:
    """Write the bulk dataset in one transaction, with a progress bar per table."""
    system_rng = secrets.SystemRandom()
    # Benchmark data, not secrets: a seedable generator, so a dataset can be reproduced.
    rng = random.Random(  # noqa: S311
        plan.random_seed if plan.random_seed is not None else system_rng.random()
    )
    users = plan.users
    if plan.orders and not users:
        users = max(1, math.ceil(plan.orders / BUYERS_PER_ORDER))
    # One hash for every bulk user, off the event loop (argon2 is slow on purpose).
    password_hash = await hash_password_off_loop(BULK_PASSWORD)

    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        async with connection.transaction():
            if not await connection.fetchval("""SELECT to_regclass('"Order"') IS NOT NULL"""):
                raise BulkSeedError(
                    "the database has no store tables yet; run `coursehub db migrate` first"
                )
            admin_id = await connection.fetchval(
                """SELECT "id" FROM "User" WHERE "role" = 'admin' ORDER BY "createdAt" LIMIT 1"""
            )
            if admin_id is None:
                raise BulkSeedError(
                    "no admin to own the bulk courses and coupons; run `coursehub db seed` first"
                )
            tag = await _fresh_tag(connection, system_rng)
            report = BulkReport(tag=tag, buyers_added=users - plan.users)
            generator = BulkGenerator(
                tag=tag, now=datetime.now(UTC), rng=rng, password_hash=password_hash
            )
            with rows_progress(enabled=plan.show_progress) as progress:
                started = time.perf_counter()
                writer = _Writer(connection, config.schema, progress, report, started)
                await _write_all(writer, generator, plan, users=users, admin_id=admin_id)
                report.seconds = time.perf_counter() - started
    finally:
        await connection.close()
    # Statistics for the rows just written, before any use.
    report.warning = await analyze_after_commit(config)
    return report


async def _write_all(
    writer: _Writer, generator: BulkGenerator, plan: BulkPlan, *, users: int, admin_id: str
) -> None:
    writer.plan("users", users)
    writer.plan("profiles", None)
    writer.plan("preferences", None)
    writer.plan("courses", plan.courses)
    if plan.orders:
        writer.plan("coupons", COUPONS_PER_RUN)
        for label in ("orders", "order items", "coupon usages", "enrollments"):
            writer.plan(label, plan.orders if label == "orders" else None)

    buyers: list[BulkUser] = []
    for start in range(0, users, USER_CHUNK):
        user_rows, profiles, preferences, made = generator.users(
            start, min(USER_CHUNK, users - start)
        )
        buyers.extend(made)
        await writer.write("users", user_rows)
        await writer.write("profiles", profiles)
        await writer.write("preferences", preferences)

    pool: list[PoolCourse] = []
    for start in range(0, plan.courses, COURSE_CHUNK):
        rows, published = generator.courses(
            start, min(COURSE_CHUNK, plan.courses - start), admin_id=admin_id
        )
        pool.extend(published)
        await writer.write("courses", rows)
    if not plan.orders:
        return

    # Orders may also buy the courses already published (the demo catalogue, earlier runs).
    known = {c.id for c in pool}
    pool.extend(c for c in await _published_courses(writer.connection) if c.id not in known)
    if not pool:
        raise BulkSeedError("no published course to order; add --courses")
    coupon_rows, coupons = generator.coupons(COUPONS_PER_RUN, admin_id=admin_id, orders=plan.orders)
    await writer.write("coupons", coupon_rows)
    await _write_orders(writer, generator, plan.orders, buyers, pool, coupons)


async def _write_orders(
    writer: _Writer,
    generator: BulkGenerator,
    count: int,
    buyers: list[BulkUser],
    pool: list[PoolCourse],
    coupons: list[BulkCoupon],
) -> None:
    sizes = [min(ORDER_CHUNK, count - start) for start in range(0, count, ORDER_CHUNK)]

    def make(size: int) -> OrderChunk:
        return generator.orders(size, buyers=buyers, pool=pool, coupons=coupons)

    # The next chunk is made in a thread while this one is COPYed: the event loop mostly
    # waits on the socket then, so Python's row-making and PostgreSQL's work overlap. One
    # chunk is made at a time, so the generator's state is never shared.
    upcoming: asyncio.Future[OrderChunk] | None = asyncio.ensure_future(
        asyncio.to_thread(make, sizes[0])
    )
    for index in range(len(sizes)):
        assert upcoming is not None
        try:
            chunk = await upcoming
        except RuntimeError as exc:
            raise BulkSeedError(str(exc)) from None
        upcoming = (
            asyncio.ensure_future(asyncio.to_thread(make, sizes[index + 1]))
            if index + 1 < len(sizes)
            else None
        )
        try:
            # Parents before children: the foreign keys are checked row by row.
            await writer.write("orders", chunk.orders)
            await writer.write("order items", chunk.items)
            await writer.write("coupon usages", chunk.usages)
            await writer.write("enrollments", chunk.enrollments)
        except BaseException:
            if upcoming is not None:
                await asyncio.gather(upcoming, return_exceptions=True)
            raise


def print_bulk_report(report: BulkReport) -> None:
    counts = ", ".join(f"{n:,} {label}" for label, n in report.rows.items() if n)
    console.print(
        f"Bulk run {report.tag}: wrote {report.total_rows:,} rows in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s): {counts}."
    )
    if report.buyers_added:
        console.print(f"(Added {report.buyers_added:,} users to place the orders.)")
    if report.rows.get("users"):
        console.print(f"Every bulk user's password is {BULK_PASSWORD!r}.")
    if report.warning:
        err_console.print(f"[yellow]warning:[/yellow] {report.warning}")
