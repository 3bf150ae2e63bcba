"""`coursehub db seed`: the idempotent demo data, and the bulk dataset for benchmarks."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.catalog.enums import CourseLevel
from coursehub.catalog.schemas import CourseCreate
from coursehub.catalog.service import slug_from_title
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.security import verify_password
from coursehub.coupons.models import CouponType
from coursehub.db import seed as seed_module
from coursehub.db.bulk import BULK_PASSWORD, BulkSeedError
from coursehub.db.bulk_rows import BulkCoupon, BulkGenerator, PoolCourse
from coursehub.db.demo_data import DEFAULT_ADMIN_EMAIL, DEMO_COUPONS, DEMO_COURSES
from coursehub.db.migrations import migrate
from coursehub.db.seed import (
    AdminSettings,
    InvalidAdminSettings,
    NotMigrated,
    SeedFailed,
    check_admin_settings,
    seed_bulk_data,
    seed_demo_data,
)
from tests.db.helpers import broken_invariants, fetch, fetchval, run_cli, table_checksums

pytestmark = pytest.mark.committing


@pytest.fixture
async def migrated_db(scratch_db: DatabaseConfig) -> AsyncIterator[DatabaseConfig]:
    await migrate(scratch_db)
    yield scratch_db


# --- the demo data -----------------------------------------------------------------------


def test_demo_courses_follow_the_catalogue_rules() -> None:
    levels = set()
    categories = set()
    for course in DEMO_COURSES:
        checked = CourseCreate(
            title=course.title,
            slug=course.slug,
            description=course.description,
            thumbnail=course.thumbnail,
            duration=course.duration,
            price=course.price,
            features=course.features,
            category=course.category,
            level=course.level,
        )
        assert checked.category == course.category  # already lower case
        assert slug_from_title(course.title) == course.slug
        assert course.price == course.price.quantize(course.price.__class__("0.01"))
        levels.add(course.level)
        categories.add(course.category)
    assert len(DEMO_COURSES) >= 8
    assert len(levels) >= 3 and CourseLevel.all_levels in levels
    assert len(categories) >= 4
    assert len({c.slug for c in DEMO_COURSES}) == len(DEMO_COURSES)
    assert len({c.code for c in DEMO_COUPONS}) == len(DEMO_COUPONS)


async def test_seed_writes_admin_catalogue_and_coupons(migrated_db: DatabaseConfig) -> None:
    report = await seed_demo_data(migrated_db)

    assert report.admin_created and report.changed
    admins = await fetch(migrated_db, """SELECT "email", "password", "role" FROM "User" """)
    assert [(a["email"], a["role"]) for a in admins] == [(DEFAULT_ADMIN_EMAIL, "admin")]
    assert report.generated_admin_password is not None
    assert len(report.generated_admin_password) >= 16
    assert verify_password(report.generated_admin_password, admins[0]["password"])[0]
    assert admins[0]["password"].startswith("$argon2id$")

    courses = await fetch(migrated_db, 'SELECT * FROM "Course"')
    assert len(courses) == len(DEMO_COURSES) >= 8
    published = [c for c in courses if c["isPublished"]]
    assert len(courses) - len(published) == 1  # one unpublished draft
    assert sum(c["price"] == 0 for c in published) == 1  # one free course
    assert sum(c["isFeatured"] for c in published) >= 2
    assert len({c["category"] for c in courses}) >= 4
    assert {c["level"] for c in courses} <= {level.value for level in CourseLevel}
    admin_id = await fetchval(migrated_db, 'SELECT "id" FROM "User"')
    assert {c["createdBy"] for c in courses} == {admin_id}

    now = datetime.now(UTC).replace(tzinfo=None)
    coupons = {c["code"]: c for c in await fetch(migrated_db, 'SELECT * FROM "Coupon"')}
    assert len(coupons) == len(DEMO_COUPONS)
    current = [c for c in coupons.values() if c["startDate"] <= now <= c["endDate"]]
    assert any(c["type"] == "percentage" and c["maxDiscount"] is not None for c in current)
    assert any(c["type"] == "fixed" for c in current)
    assert any(c["minPurchase"] is not None for c in current)
    assert any(c["maxUses"] is not None for c in current)
    assert any(c["endDate"] < now for c in coupons.values())  # expired
    assert any(c["startDate"] > now for c in coupons.values())  # not started yet
    assert all(code == code.upper() for code in coupons)


async def test_a_second_seed_changes_nothing(migrated_db: DatabaseConfig) -> None:
    await seed_demo_data(migrated_db)
    # An admin edits a seeded course; seeding again must not undo it.
    await fetch(
        migrated_db,
        """UPDATE "Course" SET "price" = 1234.00 WHERE "slug" = 'digital-marketing-masterclass'""",
    )
    before = await table_checksums(migrated_db)

    again = await seed_demo_data(migrated_db)

    assert not again.changed and not again.admin_created
    assert again.generated_admin_password is None
    assert again.existing == {
        "admins": 1,
        "courses": len(DEMO_COURSES),
        "coupons": len(DEMO_COUPONS),
    }
    assert await table_checksums(migrated_db) == before


async def test_seeds_running_at_once_make_one_of_everything(migrated_db: DatabaseConfig) -> None:
    reports = await asyncio.gather(*(seed_demo_data(migrated_db) for _ in range(3)))

    assert sum(r.admin_created for r in reports) == 1
    assert sum(r.created.get("courses", 0) for r in reports) == len(DEMO_COURSES)
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "User"') == 1
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "Course"') == len(DEMO_COURSES)
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "Coupon"') == len(DEMO_COUPONS)


async def test_seeding_a_database_that_is_not_migrated_says_so(
    scratch_db: DatabaseConfig,
) -> None:
    with pytest.raises(NotMigrated, match="coursehub db migrate"):
        await seed_demo_data(scratch_db)


async def test_without_admin_email_an_existing_admin_is_kept_not_joined(
    migrated_db: DatabaseConfig,
) -> None:
    first = await seed_demo_data(
        migrated_db, admin=AdminSettings(email="a@b.co", password="a-long-admin-password")
    )
    before = await table_checksums(migrated_db)

    again = await seed_demo_data(migrated_db, admin=AdminSettings(email=None, password=None))

    assert first.admin_created
    assert not again.changed and not again.admin_created
    assert again.admin_email == "a@b.co"
    assert again.existing == {
        "admins": 1,
        "courses": len(DEMO_COURSES),
        "coupons": len(DEMO_COUPONS),
    }
    assert await table_checksums(migrated_db) == before


async def test_an_admin_email_of_a_non_admin_refuses_the_seed_and_writes_nothing(
    migrated_db: DatabaseConfig,
) -> None:
    """Seeding on would leave no admin and demo courses made by a customer's account."""
    await fetch(
        migrated_db,
        """INSERT INTO "User" ("id", "email", "username", "password", "updatedAt")
           VALUES ($1, 'shopper@store.example', 'shopper', 'x', now())""",
        str(uuid.uuid4()),
    )
    before = await table_checksums(migrated_db)

    with pytest.raises(SeedFailed, match="not an admin; nothing was seeded"):
        await seed_demo_data(
            migrated_db, admin=check_admin_settings(" Shopper@Store.example ", None)
        )

    assert await table_checksums(migrated_db) == before
    assert (
        await fetchval(migrated_db, """SELECT role::text FROM "User" WHERE username = 'shopper'""")
        == "user"
    )


async def test_a_username_taken_between_the_look_and_the_insert_is_not_fatal(
    migrated_db: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin's insert can conflict on the username rather than the email (someone
    signed up as `owner` meanwhile): the seed picks another name instead of failing."""
    await fetch(
        migrated_db,
        """INSERT INTO "User" ("id", "email", "username", "password", "updatedAt")
           VALUES ($1, 'someone@else.example', 'owner', 'x', now())""",
        str(uuid.uuid4()),
    )
    real_free_username = seed_module._free_username
    calls = 0

    async def stale_then_real(session: AsyncSession, base: str) -> str:
        nonlocal calls
        calls += 1
        # The first look is stale: it saw `owner` as free.
        return base if calls == 1 else await real_free_username(session, base)

    monkeypatch.setattr(seed_module, "_free_username", stale_then_real)

    report = await seed_demo_data(
        migrated_db, admin=AdminSettings(email="owner@store.example", password=None)
    )

    assert report.admin_created and calls == 2
    rows = await fetch(migrated_db, """SELECT "email", "username", "role" FROM "User" """)
    assert {(r["email"], r["username"], r["role"]) for r in rows} == {
        ("someone@else.example", "owner", "user"),
        ("owner@store.example", "owner-2", "admin"),
    }


@pytest.mark.parametrize(
    ("email", "password", "bad"),
    [
        ("not-an-email", "a-long-admin-password", "ADMIN_EMAIL"),
        ("owner@", None, "ADMIN_EMAIL"),
        ("owner@store.example", "x", "ADMIN_PASSWORD"),
        (None, "short", "ADMIN_PASSWORD"),
        ("owner@store.example", "p" * 129, "ADMIN_PASSWORD"),
    ],
)
def test_admin_settings_follow_the_rules_of_sign_up(
    email: str | None, password: str | None, bad: str
) -> None:
    with pytest.raises(InvalidAdminSettings, match=bad) as caught:
        check_admin_settings(email, password)
    assert "\n" not in str(caught.value)


def test_admin_settings_are_normalised_as_sign_up_does_and_blank_is_unset() -> None:
    assert check_admin_settings(" Owner@Store.EXAMPLE ", "p" * 8) == AdminSettings(
        email="owner@store.example", password="p" * 8
    )
    assert check_admin_settings("", "") == AdminSettings(email=None, password=None)


# --- the CLI -----------------------------------------------------------------------------


async def test_cli_seed_uses_admin_email_and_password_and_is_idempotent(
    migrated_db: DatabaseConfig,
) -> None:
    env = {"ADMIN_EMAIL": "Owner@Store.example", "ADMIN_PASSWORD": "a-long-admin-password"}

    first = await asyncio.to_thread(run_cli, "db", "seed", config=migrated_db, env=env)
    second = await asyncio.to_thread(run_cli, "db", "seed", config=migrated_db, env=env)

    assert first.returncode == 0, first.stderr
    assert "Seeded 1 admin, 11 courses, 6 coupons" in first.stdout
    assert "a-long-admin-password" not in first.stdout + first.stderr
    assert "password" not in first.stdout.lower()  # nothing generated, nothing to show
    assert second.returncode == 0, second.stderr
    assert "Nothing to do" in second.stdout and "nothing was changed" in second.stdout
    rows = await fetch(migrated_db, """SELECT "email", "username", "password" FROM "User" """)
    assert [(r["email"], r["username"]) for r in rows] == [("owner@store.example", "owner")]
    assert verify_password("a-long-admin-password", rows[0]["password"])[0]


async def test_cli_prints_a_generated_password_once(migrated_db: DatabaseConfig) -> None:
    first = await asyncio.to_thread(run_cli, "db", "seed", config=migrated_db)
    second = await asyncio.to_thread(run_cli, "db", "seed", config=migrated_db)

    match = re.search(r"Admin password \(shown once\): (\S+)", first.stdout)
    assert match, first.stdout
    stored = await fetchval(migrated_db, 'SELECT "password" FROM "User"')
    assert verify_password(match.group(1), stored)[0]
    assert match.group(1) not in second.stdout + second.stderr
    assert "shown once" not in second.stdout


async def test_cli_reset_refuses_without_force_and_rebuilds_with_it(
    migrated_db: DatabaseConfig,
) -> None:
    await seed_demo_data(migrated_db)
    await fetch(migrated_db, """DELETE FROM "Coupon" WHERE "code" = 'FLAT300'""")
    await fetch(migrated_db, """UPDATE "Course" SET "title" = 'Changed' WHERE "price" = 0""")

    refused = await asyncio.to_thread(run_cli, "db", "reset", config=migrated_db)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "Coupon"') == len(DEMO_COUPONS) - 1

    reset = await asyncio.to_thread(run_cli, "db", "reset", "--force", config=migrated_db)

    assert reset.returncode == 0, reset.stderr
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "Coupon"') == len(DEMO_COUPONS)
    assert (
        await fetchval(migrated_db, """SELECT count(*) FROM "Course" WHERE "title" = 'Changed'""")
        == 0
    )
    assert "shown once" in reset.stdout  # a new admin, so a new password


async def test_cli_reset_with_invalid_admin_settings_fails_in_one_line_and_drops_nothing(
    migrated_db: DatabaseConfig,
) -> None:
    await seed_demo_data(migrated_db)
    before = await table_checksums(migrated_db)

    result = await asyncio.to_thread(
        run_cli,
        "db",
        "reset",
        "--force",
        config=migrated_db,
        env={"ADMIN_EMAIL": "not-an-email", "ADMIN_PASSWORD": "x"},
    )

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert "ADMIN_EMAIL" in errors[0] and "ADMIN_PASSWORD" in errors[0]
    assert "Traceback" not in result.stderr
    assert await table_checksums(migrated_db) == before


async def test_cli_seed_with_a_short_admin_password_writes_nothing(
    migrated_db: DatabaseConfig,
) -> None:
    result = await asyncio.to_thread(
        run_cli, "db", "seed", config=migrated_db, env={"ADMIN_PASSWORD": "x"}
    )

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "ADMIN_PASSWORD" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    for table in ("User", "Course", "Coupon"):
        assert await fetchval(migrated_db, f'SELECT count(*) FROM "{table}"') == 0


async def test_cli_seed_reports_what_it_made_and_what_it_kept_by_kind(
    migrated_db: DatabaseConfig,
) -> None:
    await seed_demo_data(migrated_db)
    await fetch(migrated_db, """DELETE FROM "Coupon" WHERE "code" = 'FLAT300'""")

    topped_up = await asyncio.to_thread(run_cli, "db", "seed", config=migrated_db)
    second = await asyncio.to_thread(run_cli, "db", "seed", config=migrated_db)

    assert topped_up.returncode == 0, topped_up.stderr
    assert "Seeded 1 coupon." in topped_up.stdout, topped_up.stdout
    assert (
        f"Already there, left as they were: admin {DEFAULT_ADMIN_EMAIL}, "
        f"{len(DEMO_COURSES)} courses, {len(DEMO_COUPONS) - 1} coupons." in topped_up.stdout
    ), topped_up.stdout
    assert second.returncode == 0, second.stderr
    assert "Nothing to do" in second.stdout and "nothing was changed" in second.stdout
    assert f"admin {DEFAULT_ADMIN_EMAIL}" in second.stdout
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "User"') == 1


# --- the bulk dataset --------------------------------------------------------------------


async def test_bulk_data_is_consistent_and_runs_can_repeat(migrated_db: DatabaseConfig) -> None:
    await seed_demo_data(migrated_db)

    first = await seed_bulk_data(
        migrated_db, users=300, courses=40, orders=1500, random_seed=7, show_progress=False
    )
    second = await seed_bulk_data(
        migrated_db, users=100, courses=10, orders=400, show_progress=False
    )

    assert first.tag != second.tag
    counts = {
        table: await fetchval(migrated_db, f'SELECT count(*) FROM "{table}"')
        for table in ("User", "Course", "Order", "OrderItem", "CouponUsage", "CourseEnrollment")
    }
    assert counts["User"] == 1 + 300 + 100
    assert counts["Course"] == len(DEMO_COURSES) + 40 + 10
    assert counts["Order"] == 1500 + 400
    assert counts["OrderItem"] == first.rows["order items"] + second.rows["order items"]
    assert counts["CouponUsage"] == first.rows["coupon usages"] + second.rows["coupon usages"] > 0
    assert counts["CourseEnrollment"] == first.rows["enrollments"] + second.rows["enrollments"]
    assert await broken_invariants(migrated_db) == {}

    # Statuses are mixed, as a real store's are.
    states = {
        (r["status"], r["paymentStatus"])
        for r in await fetch(migrated_db, 'SELECT DISTINCT "status", "paymentStatus" FROM "Order"')
    }
    assert {("completed", "paid"), ("refunded", "refunded"), ("pending", "pending")} <= states
    assert any(status == "cancelled" for status, _ in states)

    # Ids are uuid4 and times carry the milliseconds TIMESTAMP(3) keeps, set by us.
    sample = await fetch(migrated_db, 'SELECT "id", "createdAt", "updatedAt" FROM "Order" LIMIT 50')
    for row in sample:
        assert uuid.UUID(row["id"]).version == 4
        assert row["createdAt"].microsecond % 1000 == 0
    # Every bulk user signs in with the one documented password.
    hashed = await fetchval(
        migrated_db,
        """SELECT "password" FROM "User" WHERE "email" LIKE $1 LIMIT 1""",
        f"%+{first.tag}.%",
    )
    assert verify_password(BULK_PASSWORD, hashed)[0]
    assert first.rows_per_second > 0


async def test_bulk_orders_without_users_bring_their_own_buyers(
    migrated_db: DatabaseConfig,
) -> None:
    await seed_demo_data(migrated_db)

    report = await seed_bulk_data(migrated_db, users=0, courses=0, orders=200, show_progress=False)

    assert report.buyers_added == report.rows["users"] == 50
    assert report.rows["orders"] == 200
    assert await broken_invariants(migrated_db) == {}
    # Analysed afterwards: the planner knows the new rows before autovacuum gets to them.
    planned = await fetchval(
        migrated_db, """SELECT reltuples FROM pg_class WHERE oid = '"Order"'::regclass"""
    )
    assert planned == 200


async def test_bulk_needs_an_admin_and_leaves_nothing_when_it_fails(
    migrated_db: DatabaseConfig,
) -> None:
    with pytest.raises(BulkSeedError, match="coursehub db seed"):
        await seed_bulk_data(migrated_db, users=10, courses=5, orders=0, show_progress=False)
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "User"') == 0


async def test_cli_bulk_seed_reports_rows_and_rate(migrated_db: DatabaseConfig) -> None:
    result = await asyncio.to_thread(
        run_cli,
        "db",
        "seed",
        "--users",
        "50",
        "--courses",
        "10",
        "--orders",
        "120",
        config=migrated_db,
    )

    assert result.returncode == 0, result.stderr
    assert "rows/s" in result.stdout and "120 orders" in result.stdout
    assert await fetchval(migrated_db, 'SELECT count(*) FROM "Order"') == 120


def test_a_coupon_that_makes_orders_free_still_keeps_its_use_limit() -> None:
    """Orders drawn as cancelled become completed when a coupon makes them free, so that
    use must count towards maxUses."""
    generator = BulkGenerator(
        tag="t3st1", now=datetime.now(UTC), rng=random.Random(1), password_hash="x"
    )
    _, _, _, buyers = generator.users(0, 400)
    long_ago = datetime(2020, 1, 1)
    pool = [PoolCourse(f"course-{n}", Decimal("100.00"), long_ago) for n in range(20)]
    everything_off = BulkCoupon(
        id="c1",
        type=CouponType.fixed,
        value=Decimal("1000.00"),
        max_discount=None,
        min_purchase=None,
        max_uses=3,
        start=long_ago,
        end=datetime(2100, 1, 1),
    )

    chunk = generator.orders(2000, buyers=buyers, pool=pool, coupons=[everything_off])

    status_of = {row[0]: row[3] for row in chunk.orders}
    counted = [u for u in chunk.usages if status_of[u[3]] != "cancelled"]
    assert 0 < len(counted) <= 3
    assert all(status_of[u[3]] == "completed" for u in chunk.usages)
