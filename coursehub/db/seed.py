"""Seeding: the demo data (idempotent) and a large dataset for benchmarks (`coursehub.db.bulk`).

The demo data is keyed by natural keys — the admin's email, course slugs, coupon
codes — and written with `INSERT … ON CONFLICT DO NOTHING`, so a second run (or
two runs at once) adds nothing and changes nothing already there, including
anything an admin edited since.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.console import console
from coursehub.core.database import command_transaction
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.errors import StoreError, ValidationFailed
from coursehub.core.models import new_id, utcnow
from coursehub.core.security import hash_password_off_loop
from coursehub.core.settings import get_settings
from coursehub.db.demo_data import DEFAULT_ADMIN_EMAIL, DEMO_COUPONS, DEMO_COURSES

# Every model, so the mappers' relationships resolve.
from coursehub.models import Coupon, Course, Role, User
from coursehub.users import repository as users_repository
from coursehub.users.schemas import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, Email, NewPassword

if TYPE_CHECKING:
    from coursehub.db.bulk import BulkReport

GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters
# Tries at a free username for the admin, each after a sign-up took the one we picked.
ADMIN_INSERT_ATTEMPTS = 5


@dataclass
class SeedReport:
    # Per kind ("admins", "courses", "coupons"): rows written by this run, and rows
    # that were already there and left as they were.
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    admin_email: str = ""
    admin_created: bool = False
    # Set only when the admin was created here with a password we made up; shown once.
    generated_admin_password: str | None = None

    @property
    def changed(self) -> bool:
        return any(self.created.values())


class InvalidAdminSettings(ValidationFailed):
    code = "invalid_admin_settings"
    title = "ADMIN_EMAIL or ADMIN_PASSWORD is not valid"


@dataclass(frozen=True)
class AdminSettings:
    """ADMIN_EMAIL / ADMIN_PASSWORD, checked by sign-up's rules; None where not set."""

    email: str | None
    password: str | None


_EMAIL = TypeAdapter(Email)
_PASSWORD = TypeAdapter(NewPassword)


def check_admin_settings(email: str | None, password: str | None) -> AdminSettings:
    """ADMIN_EMAIL and ADMIN_PASSWORD checked by the rules of sign-up
    (`coursehub.users.schemas`), so seeding can't make an admin the API would refuse.
    A blank value counts as not set. Raises InvalidAdminSettings, in one line."""
    given_email = (email or "").strip() or None
    problems = []
    checked_email = checked_password = None
    if given_email is not None:
        try:
            checked_email = _EMAIL.validate_python(given_email)
        except ValidationError as exc:
            problems.append(f"ADMIN_EMAIL: {exc.errors()[0]['msg']}")
    if password:
        try:
            checked_password = _PASSWORD.validate_python(password)
        except ValidationError:
            problems.append(
                f"ADMIN_PASSWORD: must be {PASSWORD_MIN_LENGTH}–{PASSWORD_MAX_LENGTH} characters"
            )
    if problems:
        raise InvalidAdminSettings(
            "; ".join(problems) + " (the rules of sign-up); nothing was written"
        )
    return AdminSettings(email=checked_email, password=checked_password)


def admin_settings() -> AdminSettings:
    """The settings' ADMIN_EMAIL and ADMIN_PASSWORD, checked (see check_admin_settings)."""
    settings = get_settings()
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    return check_admin_settings(settings.admin_email, password)


class SeedFailed(StoreError):
    status = 409
    code = "seed_failed"
    title = "The demo data could not be seeded"


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


async def _seed_admin(session: AsyncSession, report: SeedReport, wanted: AdminSettings) -> str:
    """The id of the admin the demo data is made by.

    With ADMIN_EMAIL: the account with that email, created (with ADMIN_PASSWORD or a
    generated password) if there is none. Without it: the oldest existing admin, if
    any, so a later plain `db seed` does not add a second admin next to the one an
    earlier run made from ADMIN_EMAIL; else admin@coursehub.dev is created.

    The caller holds the admin-set lock, so seeds running at once see each other's admin.
    """
    if wanted.email is None:
        oldest_admin = await session.scalar(
            select(User).where(User.role == Role.admin).order_by(User.created_at, User.id).limit(1)
        )
        if oldest_admin is not None:
            report.admin_email = oldest_admin.email
            report.existing["admins"] = 1
            return oldest_admin.id
    email = wanted.email or DEFAULT_ADMIN_EMAIL
    report.admin_email = email
    existing = await _user_by_email(session, email)
    if existing is None:
        if wanted.password is not None:
            password, generated = wanted.password, False
        else:
            password, generated = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True
        hashed = await hash_password_off_loop(password)
        for _ in range(ADMIN_INSERT_ATTEMPTS):
            admin_id = await _insert_admin(
                session,
                email=email,
                username=await _free_username(session, _username_base(email)),
                password_hash=hashed,
            )
            if admin_id is not None:
                report.created["admins"] = 1
                report.admin_created = True
                report.generated_admin_password = password if generated else None
                return admin_id
            # The insert conflicted: on the email (the account was made meanwhile, by
            # a sign-up: seeds wait on the lock) or on the username (someone signed up
            # with it since we looked), in which case another name is tried.
            existing = await _user_by_email(session, email)
            if existing is not None:
                break
        else:
            raise SeedFailed(
                f"could not find a free username for the admin {email}; "
                "try again, or create it with `coursehub users create-admin`"
            )
    if existing.role != Role.admin:
        # Seeding on would leave the store without the admin asked for, and the demo
        # courses made by a customer's account: refuse, before anything is written.
        raise SeedFailed(
            f"ADMIN_EMAIL {email} belongs to an account that is not an admin; nothing was "
            f"seeded. Make it one (`coursehub users create-admin --email {email} "
            "--username <any> --promote`) or choose another ADMIN_EMAIL"
        )
    report.existing["admins"] = 1
    return existing.id


async def _user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email))


async def _insert_admin(
    session: AsyncSession, *, email: str, username: str, password_hash: str
) -> str | None:
    """The new admin's id, or None if the email or the username is taken."""
    now = utcnow()
    admin_id: str | None = await session.scalar(
        insert(User)
        .values(
            id=new_id(),
            email=email,
            username=username,
            password=password_hash,
            role=Role.admin,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(User.id)
    )
    return admin_id


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


async def seed_demo_data(
    config: DatabaseConfig, *, admin: AdminSettings | None = None
) -> SeedReport:
    """Write the admin, the demo courses and the demo coupons that are missing, in one
    transaction. Nothing already there is changed.

    `admin`: the admin's email and password; by default ADMIN_EMAIL / ADMIN_PASSWORD,
    checked before anything is written.
    """
    wanted = admin if admin is not None else admin_settings()
    report = SeedReport()
    async with command_transaction(config) as session:
        await ensure_migrated(session)
        # One seed at a time, and not while an admin is being demoted or removed:
        # whether "an admin exists" must still hold when we act on it.
        await users_repository.lock_admin_set(session)
        admin_id = await _seed_admin(session, report, wanted)
        await _seed_courses(session, report, admin_id)
        await _seed_coupons(session, report, admin_id)
    return report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _kept(report: SeedReport) -> str:
    """What was already there, per kind: "admin a@b.co, 11 courses, 6 coupons"."""
    parts = [f"admin {report.admin_email}"] if report.existing.get("admins") else []
    parts += [
        _count(report.existing[kind], noun)
        for kind, noun in (("courses", "course"), ("coupons", "coupon"))
        if report.existing.get(kind)
    ]
    return ", ".join(parts)


def print_seed_report(report: SeedReport) -> None:
    if not report.changed:
        console.print(
            f"Nothing to do: the demo data is already there ({_kept(report)}); nothing was changed."
        )
    else:
        made = [
            _count(report.created[kind], noun)
            for kind, noun in (("admins", "admin"), ("courses", "course"), ("coupons", "coupon"))
            if report.created.get(kind)
        ]
        kept = _kept(report)
        tail = f" Already there, left as they were: {kept}." if kept else ""
        console.print("Seeded " + ", ".join(made) + "." + tail)
    if report.admin_created:
        console.print(f"Admin: {report.admin_email}")
        if report.generated_admin_password is not None:
            # Printed this once only: it is stored nowhere but as a hash.
            console.print(
                f"[bold]Admin password (shown once): {report.generated_admin_password}[/bold]\n"
                "Set ADMIN_EMAIL and ADMIN_PASSWORD before seeding to choose them yourself."
            )


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
