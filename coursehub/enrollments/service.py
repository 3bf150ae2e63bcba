"""Enrollment rules: granted by a paid (or free) order or by an admin, revoked by a refund
or an admin; a learner's own list and progress."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.catalog.errors import CourseNotFound
from coursehub.core.models import utcnow
from coursehub.core.pagination import CursorCodec, Page, decode_time_keyset, time_keyset_page
from coursehub.core.sql import Writer
from coursehub.enrollments import repository
from coursehub.enrollments.errors import AlreadyEnrolled, EnrollmentNotActive, EnrollmentNotFound
from coursehub.enrollments.models import CourseEnrollment, EnrollmentStatus
from coursehub.enrollments.schemas import ProgressUpdate
from coursehub.users.errors import UserNotFound
from coursehub.users.models import User
from coursehub.users.repository import get_user_by_id

COMPLETE = 100  # percent


async def grant_enrollments_for_order(
    writer: Writer, *, user_id: str, order_id: str, course_ids: list[str]
) -> None:
    """Enroll the buyer in every course of a completed order (reactivating revoked ones)."""
    await repository.upsert_active_enrollments(
        writer, user_id=user_id, course_ids=course_ids, order_id=order_id
    )


async def revoke_enrollments_for_order(session: AsyncSession, *, order_id: str) -> int:
    """Revoke what a refunded order granted. The number revoked."""
    return await repository.revoke_enrollments_of_order(session, order_id=order_id)


# --- a learner's own enrollments -------------------------------------------------------


def _cursor_context(audience: str, status: EnrollmentStatus | None) -> str:
    return f"enrollments:{audience}:{status.value if status else 'all'}"


async def _page(
    session: AsyncSession,
    *,
    user_id: str,
    status: EnrollmentStatus | None,
    limit: int,
    cursor: str | None,
    codec: CursorCodec,
    context: str,
) -> Page[CourseEnrollment]:
    after = decode_time_keyset(codec, context, cursor) if cursor else None
    rows = await repository.list_enrollments(
        session, user_id=user_id, status=status, after=after, limit=limit + 1
    )
    return time_keyset_page(
        rows,
        limit=limit,
        keyset=lambda row: (row.created_at, row.id),
        codec=codec,
        context=context,
    )


async def list_my_enrollments(
    session: AsyncSession, *, user: User, limit: int, cursor: str | None, codec: CursorCodec
) -> Page[CourseEnrollment]:
    """The user's active enrollments with their courses, newest first."""
    return await _page(
        session,
        user_id=user.id,
        status=EnrollmentStatus.active,
        limit=limit,
        cursor=cursor,
        codec=codec,
        context=_cursor_context("me", EnrollmentStatus.active),
    )


async def update_progress(
    session: AsyncSession, *, user: User, course_id: str, data: ProgressUpdate
) -> CourseEnrollment:
    """Set the progress of an active enrollment: 100 sets completedAt (kept if it was
    already complete), anything lower clears it."""
    enrollment = await repository.get_enrollment(
        session, user_id=user.id, course_id=course_id, lock=True
    )
    if enrollment is None or enrollment.status != EnrollmentStatus.active:
        raise EnrollmentNotFound(f"you are not enrolled in course {course_id!r}")
    enrollment.progress = data.progress
    if data.progress == COMPLETE:
        if enrollment.completed_at is None:
            enrollment.completed_at = utcnow()
    else:
        enrollment.completed_at = None
    await session.flush()
    return enrollment


# --- admins ----------------------------------------------------------------------------


async def list_user_enrollments(
    session: AsyncSession,
    *,
    user_id: str,
    status: EnrollmentStatus | None,
    limit: int,
    cursor: str | None,
    codec: CursorCodec,
) -> Page[CourseEnrollment]:
    """Any user's enrollments (both statuses unless `status`), newest first."""
    if await get_user_by_id(session, user_id) is None:
        raise UserNotFound(f"no user with id {user_id!r}")
    return await _page(
        session,
        user_id=user_id,
        status=status,
        limit=limit,
        cursor=cursor,
        codec=codec,
        context=_cursor_context(f"admin:{user_id}", status),
    )


async def grant_enrollment(
    session: AsyncSession, *, user_id: str, course_id: str
) -> CourseEnrollment:
    """Enroll a user without an order (orderId null); a revoked enrollment is reactivated.
    409 if already active."""
    # Locked, not just read: a deletion of either racing this grant would otherwise make
    # the insert below fail its foreign key (a 500) instead of answering 404.
    user_exists, course_exists = await repository.hold_user_and_course(
        session, user_id=user_id, course_id=course_id
    )
    if not user_exists:
        raise UserNotFound(f"no user with id {user_id!r}")
    if not course_exists:
        raise CourseNotFound(f"no course with id {course_id!r}")
    granted = await repository.grant_enrollment_without_order(
        session, user_id=user_id, course_id=course_id
    )
    if not granted:
        raise AlreadyEnrolled(
            f"user {user_id} is already enrolled in course {course_id}",
            extra={"userId": user_id, "courseId": course_id},
        )
    return await _reload(session, user_id=user_id, course_id=course_id)


async def revoke_enrollment(
    session: AsyncSession, *, user_id: str, course_id: str
) -> CourseEnrollment:
    """Revoke a user's active enrollment (kept, with its progress, as `revoked`)."""
    revoked = await repository.revoke_enrollment(session, user_id=user_id, course_id=course_id)
    if not revoked:
        existing = await repository.get_enrollment(session, user_id=user_id, course_id=course_id)
        if existing is None:
            raise EnrollmentNotFound(f"user {user_id} is not enrolled in course {course_id}")
        raise EnrollmentNotActive(f"user {user_id}'s enrollment in course {course_id} is revoked")
    return await _reload(session, user_id=user_id, course_id=course_id)


async def _reload(session: AsyncSession, *, user_id: str, course_id: str) -> CourseEnrollment:
    enrollment = await repository.get_enrollment(session, user_id=user_id, course_id=course_id)
    assert enrollment is not None, "written in this transaction"
    return enrollment
