"""Keyword-only factories: each builds one row with sensible defaults and flushes it.

They write through the ORM models directly (not the services), so a test of a
service starts from a state it did not make itself.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import utcnow
from coursehub.core.security import create_token, hash_password
from coursehub.models import (
    Coupon,
    CouponType,
    CouponUsage,
    Course,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderItem,
    OrderStatus,
    PaymentStatus,
    Role,
    User,
    UserPreference,
    UserProfile,
)
from tests.conftest import TEST_SECRET

_sequence = itertools.count(1)
DEFAULT_PASSWORD = "correct-horse-battery"
# Hashing is slow on purpose; most tests do not care which password a user has.
_DEFAULT_HASH = hash_password(DEFAULT_PASSWORD)


def _n() -> int:
    return next(_sequence)


async def make_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    username: str | None = None,
    password: str | None = None,
    password_hash: str | None = None,
    role: Role = Role.user,
) -> User:
    n = _n()
    user = User(
        email=email or f"user{n}@example.com",
        username=username or f"user{n}",
        password=password_hash or (hash_password(password) if password else _DEFAULT_HASH),
        role=role,
    )
    session.add(user)
    await session.flush()
    return user


async def make_admin(session: AsyncSession, **kwargs: Any) -> User:
    return await make_user(session, role=Role.admin, **kwargs)


async def make_profile(session: AsyncSession, *, user: User, **fields: Any) -> UserProfile:
    profile = UserProfile(user_id=user.id, **fields)
    session.add(profile)
    await session.flush()
    return profile


async def make_preferences(session: AsyncSession, *, user: User, **fields: Any) -> UserPreference:
    preferences = UserPreference(user_id=user.id, **fields)
    session.add(preferences)
    await session.flush()
    return preferences


async def make_course(
    session: AsyncSession,
    *,
    title: str | None = None,
    slug: str | None = None,
    price: Decimal | str = Decimal("499.00"),
    category: str = "programming",
    level: str = "beginner",
    published: bool = True,
    featured: bool = False,
    duration: int = 120,
    description: str | None = None,
    features: list[str] | None = None,
    created_by: str = "seed-admin",
    created_at: datetime | None = None,
) -> Course:
    n = _n()
    course = Course(
        title=title or f"Course {n}",
        slug=slug or f"course-{n}",
        price=Decimal(price),
        category=category,
        level=level,
        is_published=published,
        is_featured=featured,
        duration=duration,
        description=description,
        features=features if features is not None else ["video"],
        created_by=created_by,
    )
    if created_at is not None:
        course.created_at = created_at
    session.add(course)
    await session.flush()
    return course


async def make_coupon(
    session: AsyncSession,
    *,
    code: str | None = None,
    type: CouponType = CouponType.percentage,
    value: Decimal | str = Decimal("10"),
    max_discount: Decimal | str | None = None,
    min_purchase: Decimal | str | None = None,
    starts: datetime | None = None,
    ends: datetime | None = None,
    max_uses: int | None = None,
    created_by: str = "seed-admin",
) -> Coupon:
    now = utcnow()
    coupon = Coupon(
        code=code or f"SAVE{_n()}",
        type=type,
        value=Decimal(value),
        max_discount=Decimal(max_discount) if max_discount is not None else None,
        min_purchase=Decimal(min_purchase) if min_purchase is not None else None,
        start_date=starts or now - timedelta(days=1),
        end_date=ends or now + timedelta(days=30),
        max_uses=max_uses,
        created_by=created_by,
    )
    session.add(coupon)
    await session.flush()
    return coupon


async def make_order(
    session: AsyncSession,
    *,
    user: User,
    courses: list[Course],
    status: OrderStatus = OrderStatus.pending,
    payment_status: PaymentStatus = PaymentStatus.pending,
    coupon: Coupon | None = None,
    discount: Decimal | str = Decimal("0"),
    payment_method: str | None = None,
    created_at: datetime | None = None,
    currency: str = "INR",
) -> Order:
    original = sum((c.price for c in courses), Decimal("0"))
    order = Order(
        currency=currency,
        order_number=f"CH-TEST-{_n():06d}",
        user_id=user.id,
        status=status,
        payment_status=payment_status,
        original_amount=original,
        amount=original - Decimal(discount),
        payment_method=payment_method,
    )
    if created_at is not None:
        order.created_at = created_at
    session.add(order)
    await session.flush()
    for course in courses:
        session.add(OrderItem(order_id=order.id, course_id=course.id, price=course.price))
    if coupon is not None:
        session.add(
            CouponUsage(
                coupon_id=coupon.id, user_id=user.id, order_id=order.id, discount=Decimal(discount)
            )
        )
    await session.flush()
    return order


async def make_enrollment(
    session: AsyncSession,
    *,
    user: User,
    course: Course,
    order: Order | None = None,
    status: EnrollmentStatus = EnrollmentStatus.active,
    progress: int = 0,
) -> CourseEnrollment:
    enrollment = CourseEnrollment(
        user_id=user.id,
        course_id=course.id,
        order_id=order.id if order else None,
        status=status,
        progress=progress,
    )
    session.add(enrollment)
    await session.flush()
    return enrollment


def access_token(user: User, *, lifetime: timedelta = timedelta(minutes=30)) -> str:
    return create_token(
        secret=TEST_SECRET,
        user_id=user.id,
        password_hashed=user.password,
        type="access",
        lifetime=lifetime,
    )


def bearer(token: str) -> dict[str, str]:
    """The headers that present `token`."""
    return {"Authorization": f"Bearer {token}"}


def auth_headers(user: User) -> dict[str, str]:
    return bearer(access_token(user))
