"""Seeding: the demo data (idempotent) and a large dataset for benchmarks (`coursehub.db.bulk`).

The demo data is keyed by natural keys — the admin's email, course slugs, coupon
codes — and written with `INSERT … ON CONFLICT DO NOTHING`, so a second run (or
two runs at once) adds nothing and changes nothing already there, including
anything an admin edited since.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.console import console, err_console
from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import StoreError
from coursehub.core.models import new_id, utcnow
from coursehub.core.security import hash_password
from coursehub.core.settings import get_settings
from coursehub.db.demo_data import DEFAULT_ADMIN_EMAIL, DEMO_COUPONS, DEMO_COURSES

# Every model, so the mappers' relationships resolve.
from coursehub.models import Coupon, Course, Role, User

if TYPE_CHECKING:
    from coursehub.db.bulk import BulkReport

GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters


@dataclass
class SeedReport:
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    admin_email: str = ""
    admin_created: bool = False
    # Set only when the admin was created here with a password we made up; shown once.
    generated_admin_password: str | None = None
    # Set when the admin's email belongs to an account that is not an admin.
    warning: str | None = None

    @property
    def changed(self) -> bool:
        return any(self.created.values())


class NotMigrated(StoreError):
    status = 500
    code = "database_not_migrated"
    title = "The database is not migrated"


async def ensure_migrated(session: AsyncSession) -> None:
    """A clear error instead of `relation "User" does not exist` on a bare database."""
    tables = await session.scalar(
        text("""SELECT to_regclass('"User"') IS NOT NULL AND to_regclass('"Coupon"') IS NOT NULL""")
    )
    if not tables:
        raise NotMigrated("the database has no store tables yet; run `coursehub db migrate` first")


def _username_base(email: str) -> str:
    """A username from the email's local part: 3–30 of [a-z0-9_.-]."""
    base = re.sub(r"[^a-z0-9_.-]", "", email.split("@", 1)[0].lower())[:24]
    return base if len(base) >= 3 else "admin"


async def _free_username(session: AsyncSession, base: str) -> str:
    taken = set(
        (
            await session.scalars(
                select(func.lower(User.username)).where(
                    func.lower(User.username).startswith(base, autoescape=True)
                )
            )
        ).all()
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


async def _seed_admin(session: AsyncSession, report: SeedReport) -> str:
    """The admin's id: found by email, or created with ADMIN_PASSWORD or a generated one."""
    settings = get_settings()
    email = (settings.admin_email or DEFAULT_ADMIN_EMAIL).strip().lower()
    report.admin_email = email
    existing = await session.scalar(select(User).where(func.lower(User.email) == email))
    if existing is None:
        if settings.admin_password is not None:
            password, generated = settings.admin_password.get_secret_value(), False
        else:
            password, generated = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True
        # argon2 is deliberately slow: off the event loop.
        hashed = await asyncio.to_thread(hash_password, password)
        now = utcnow()
        admin_id: str | None = await session.scalar(
            insert(User)
            .values(
                id=new_id(),
                email=email,
                username=await _free_username(session, _username_base(email)),
                password=hashed,
                role=Role.admin,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(User.id)
        )
        if admin_id is not None:
            report.created["users"] = 1
            report.admin_created = True
            report.generated_admin_password = password if generated else None
            return admin_id
        # A concurrent seed created it between our look and our insert.
        existing = await session.scalar(select(User).where(func.lower(User.email) == email))
        assert existing is not None
    report.existing["users"] = 1
    if existing.role != Role.admin:
        report.warning = (
            f"{email} exists but is not an admin; left unchanged "
            f"(make it one with PATCH /api/v1/admin/users/{existing.id})"
        )
    return existing.id


async def _seed_courses(session: AsyncSession, report: SeedReport, admin_id: str) -> None:
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "title": course.title,
            "slug": course.slug,
            "description": course.description,
            "thumbnail": course.thumbnail,
            "duration": course.duration,
            "price": course.price,
            "features": course.features,
            "category": course.category,
            "level": course.level.value,
            "is_published": course.is_published,
            "is_featured": course.is_featured,
            "created_by": admin_id,
            # Staggered, so "newest first" lists them in a stable, catalogue order.
            "created_at": now - timedelta(minutes=len(DEMO_COURSES) - i),
            "updated_at": now - timedelta(minutes=len(DEMO_COURSES) - i),
        }
        for i, course in enumerate(DEMO_COURSES)
    ]
    created = await session.scalars(
        insert(Course)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[Course.slug])
        .returning(Course.id)
    )
    report.created["courses"] = len(created.all())
    report.existing["courses"] = len(rows) - report.created["courses"]


async def _seed_coupons(session: AsyncSession, report: SeedReport, admin_id: str) -> None:
    now = utcnow()
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    rows = []
    for coupon in DEMO_COUPONS:
        start, end = coupon.dates(today)
        rows.append(
            {
                "id": new_id(),
                "code": coupon.code,
                "type": coupon.type,
                "value": coupon.value,
                "max_discount": coupon.max_discount,
                "min_purchase": coupon.min_purchase,
                "description": coupon.description,
                "start_date": start,
                "end_date": end,
                "max_uses": coupon.max_uses,
                "created_by": admin_id,
                "created_at": now,
                "updated_at": now,
            }
        )
    created = await session.scalars(
        insert(Coupon)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[Coupon.code])
        .returning(Coupon.id)
    )
    report.created["coupons"] = len(created.all())
    report.existing["coupons"] = len(rows) - report.created["coupons"]


async def seed_demo_data(config: DatabaseConfig) -> SeedReport:
    """Write the admin, the demo courses and the demo coupons that are missing, in one
    transaction. Nothing already there is changed."""
    report = SeedReport()
    database = Database(config, pool_size=1)
    try:
        async with database.transaction() as session:
            await ensure_migrated(session)
            admin_id = await _seed_admin(session, report)
            await _seed_courses(session, report, admin_id)
            await _seed_coupons(session, report, admin_id)
    finally:
        await database.dispose()
    return report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


NOUNS = {"users": "admin", "courses": "course", "coupons": "coupon"}


def print_seed_report(report: SeedReport) -> None:
    if not report.changed:
        console.print(
            "Nothing to do: the demo data is already there "
            f"(admin {report.admin_email}, {_count(report.existing.get('courses', 0), 'course')}, "
            f"{_count(report.existing.get('coupons', 0), 'coupon')}); nothing was changed."
        )
    else:
        parts = [
            _count(report.created[kind], NOUNS[kind]) for kind in NOUNS if report.created.get(kind)
        ]
        kept = sum(report.existing.values())
        tail = f" ({kept} already there, left as they were)." if kept else "."
        console.print("Seeded " + ", ".join(parts) + tail)
    if report.admin_created:
        console.print(f"Admin: {report.admin_email}")
        if report.generated_admin_password is not None:
            # Printed this once only: it is stored nowhere but as a hash.
            console.print(
                f"[bold]Admin password (shown once): {report.generated_admin_password}[/bold]\n"
                "Set ADMIN_EMAIL and ADMIN_PASSWORD before seeding to choose them yourself."
            )
    if report.warning:
        err_console.print(f"[yellow]warning:[/yellow] {report.warning}")


async def seed_bulk_data(
    config: DatabaseConfig,
    *,
    users: int,
    courses: int,
    orders: int,
    random_seed: int | None = None,
    show_progress: bool = True,
) -> BulkReport:
    """A large, consistent dataset for benchmarks, written with COPY; see `coursehub.db.bulk`."""
    from coursehub.db.bulk import BulkPlan, seed_bulk

    plan = BulkPlan(
        users=users,
        courses=courses,
        orders=orders,
        random_seed=random_seed,
        show_progress=show_progress,
    )
    return await seed_bulk(config, plan)
