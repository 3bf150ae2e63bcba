"""The benchmark's fixture (../shared/bench/WORKLOAD.md), in a database of its own.

The suite never touches the developer's data: it creates a separate database on
the target server (`coursehub_bench` by default), migrates it with the real
migrations, loads the fixture with COPY (a second or so for the full size), and
drops it afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from coursehub.core.database import drop_database, ensure_database_exists
from coursehub.core.dburl import DatabaseConfig, quoted_identifier
from coursehub.db.bulk_rows import COUPON_COLUMNS, COURSE_COLUMNS, USER_COLUMNS
from coursehub.db.migrations import migrate

# An argon2id hash of "bench-password-1", computed once: hashing is not part of
# any operation the workload measures (WORKLOAD.md, "Fixture").
BENCH_PASSWORD = "bench-password-1"
BENCH_PASSWORD_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$qMR18r5On+TxdMHjAioj5Q$"
    "fd8QNnSn3I1ipQNYS6ZMV97HVadop13NCpCctxcyDL8"
)
ADMIN_EMAIL = "bench-admin@example.com"
COUPON_CODE = "BENCH10"
# BENCH10's twins, BENCH10-0 … BENCH10-63: checkouts that each use a coupon of their own
# (index mod 64), so that sharing one coupon can be told apart from using one at all.
OWN_COUPONS = 64
# BENCH10 with a use limit ("the first million buyers"): checkouts on one limited coupon,
# whose uses are claimed under a lock on its row (coupons/repository.py).
LIMITED_COUPON_CODE = f"{COUPON_CODE}-LIMITED"
LIMITED_COUPON_MAX_USES = 1_000_000
CATEGORY_COUNT = 10
LEVELS = ("beginner", "intermediate", "advanced")
DEFAULT_DATABASE_NAME = "coursehub_bench"


@dataclass(frozen=True)
class FixtureSize:
    courses: int = 2000
    # Users made up front for the HTTP checkout, each signed in with a token: a user
    # can't buy a course twice nor use a coupon twice, so each request goes to the
    # next user (see coursehub.bench.http).
    http_users: int = 20000


SMOKE_SIZE = FixtureSize(courses=200, http_users=1000)


@dataclass(frozen=True)
class Fixture:
    config: DatabaseConfig
    admin_id: str
    coupon_code: str
    categories: list[str]
    # The published courses, in slug order (`bench-1`, `bench-2`, …, drafts left out).
    course_ids: list[str]
    course_slugs: list[str]
    http_user_ids: list[str] = field(default_factory=list)
    own_coupon_codes: list[str] = field(default_factory=list)
    limited_coupon_code: str = LIMITED_COUPON_CODE

    def course_pair(self, index: int) -> list[str]:
        """Two distinct published courses, rotating with `index`."""
        n = len(self.course_ids)
        return [self.course_ids[(2 * index) % n], self.course_ids[(2 * index + 1) % n]]


def course_row(i: int, *, admin_id: str, created_at: datetime) -> tuple[object, ...]:
    """Course `bench-{i}` exactly as WORKLOAD.md describes it."""
    return (
        str(uuid.uuid4()),
        f"Bench course {i}",
        f"bench-{i}",
        f"Course number {i} of the benchmark fixture: videos and quizzes.",
        f"https://example.com/thumbnails/bench-{i}.jpg",
        60 + i % 600,
        Decimal(199 + (i % 50) * 100),
        ["video", "quizzes"],
        f"cat-{i % CATEGORY_COUNT}",
        LEVELS[i % len(LEVELS)],
        i % 20 != 0,  # every 20th is a draft
        i % 50 == 0,  # every 50th is featured
        admin_id,
        created_at,
        created_at,
    )


class NotABenchDatabase(RuntimeError):
    """The database named for the bench exists and was not made by it: never dropped."""


# Written on the databases the suite makes; only a database carrying it is ever dropped.
SCRATCH_MARK = "coursehub bench scratch database (dropped after each run)"
RESERVED_NAMES = frozenset({"postgres", "template0", "template1"})


async def _existing_mark(config: DatabaseConfig) -> tuple[bool, str | None]:
    """(whether the database exists, its comment)."""
    admin = await asyncpg.connect(**config.with_database("postgres").asyncpg_connect_kwargs())
    try:
        row = await admin.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS mark FROM pg_database"
            " WHERE datname = $1",
            config.database,
        )
    finally:
        await admin.close()
    return (row is not None, row["mark"] if row is not None else None)


async def prepare_fixture(config: DatabaseConfig, size: FixtureSize) -> Fixture:
    """(Re)create the bench database, migrate it and load the fixture by COPY.

    A database of that name left by an earlier run is dropped first; any other database
    of that name (one the suite did not make) is refused, never dropped."""
    if config.database in RESERVED_NAMES:
        raise NotABenchDatabase(f"{config.database!r} is PostgreSQL's own; choose another name")
    exists, mark = await _existing_mark(config)
    if exists and mark != SCRATCH_MARK:
        raise NotABenchDatabase(
            f"database {config.database!r} exists and was not made by coursehub bench; "
            "choose another --database (the suite drops its database afterwards)"
        )
    await drop_database(config)
    await ensure_database_exists(config)
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        await connection.execute(
            f"COMMENT ON DATABASE {quoted_identifier(config.database)} IS '{SCRATCH_MARK}'"
        )
    finally:
        await connection.close()
    await migrate(config)
    connection = await asyncpg.connect(**config.asyncpg_connect_kwargs())
    try:
        return await _load(connection, config, size)
    finally:
        await connection.close()


async def _load(
    connection: asyncpg.Connection, config: DatabaseConfig, size: FixtureSize
) -> Fixture:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    admin_id = str(uuid.uuid4())
    users = [(admin_id, ADMIN_EMAIL, "bench-admin", BENCH_PASSWORD_HASH, "admin", now, now)]
    http_user_ids = [str(uuid.uuid4()) for _ in range(size.http_users)]
    users += [
        (user_id, f"http-{n}@bench.example.com", f"http-{n}", BENCH_PASSWORD_HASH, "user", now, now)
        for n, user_id in enumerate(http_user_ids)
    ]
    # Distinct creation times, oldest first, so "newest first" has a real order.
    start = now - timedelta(seconds=size.courses)
    courses = [
        course_row(i, admin_id=admin_id, created_at=start + timedelta(seconds=i))
        for i in range(size.courses)
    ]
    own_coupon_codes = [f"{COUPON_CODE}-{n}" for n in range(OWN_COUPONS)]
    coupons = [
        (
            str(uuid.uuid4()),
            code,
            "percentage",
            Decimal(10),
            Decimal(500),
            None,
            "Benchmark coupon: 10% off, at most ₹500",
            datetime(1970, 1, 1),
            datetime(2100, 1, 1),
            LIMITED_COUPON_MAX_USES if code == LIMITED_COUPON_CODE else None,
            admin_id,
            now,
            now,
        )
        for code in [COUPON_CODE, *own_coupon_codes, LIMITED_COUPON_CODE]
    ]
    async with connection.transaction():
        await connection.copy_records_to_table("User", records=users, columns=USER_COLUMNS)
        await connection.copy_records_to_table("Course", records=courses, columns=COURSE_COLUMNS)
        await connection.copy_records_to_table(
            "Coupon",
            records=coupons,
            columns=COUPON_COLUMNS,
        )
    await connection.execute("ANALYZE")
    published = [row for row in courses if row[10]]
    return Fixture(
        config=config,
        admin_id=admin_id,
        coupon_code=COUPON_CODE,
        own_coupon_codes=own_coupon_codes,
        categories=[f"cat-{n}" for n in range(CATEGORY_COUNT)],
        course_ids=[str(row[0]) for row in published],
        course_slugs=[str(row[2]) for row in published],
        http_user_ids=http_user_ids,
    )


async def drop_fixture(config: DatabaseConfig) -> None:
    exists, mark = await _existing_mark(config)
    if exists and mark == SCRATCH_MARK:
        await drop_database(config)
