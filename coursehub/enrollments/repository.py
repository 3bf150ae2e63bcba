"""Queries on course enrollments."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import new_id, utcnow
from coursehub.enrollments.models import CourseEnrollment, EnrollmentStatus


async def upsert_active_enrollments(
    session: AsyncSession, *, user_id: str, course_ids: Sequence[str], order_id: str | None
) -> None:
    """Make the user actively enrolled in each course, in one statement.

    A revoked enrollment for the same course is reactivated and pointed at this
    order; an active one is left as it is.
    """
    if not course_ids:
        return
    now = utcnow()
    statement = insert(CourseEnrollment).values(
        [
            {
                "id": new_id(),
                "user_id": user_id,
                "course_id": course_id,
                "order_id": order_id,
                "status": EnrollmentStatus.active,
                "progress": 0,
                "created_at": now,
                "updated_at": now,
            }
            for course_id in course_ids
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[CourseEnrollment.user_id, CourseEnrollment.course_id],
        set_={
            "status": EnrollmentStatus.active,
            "order_id": statement.excluded.order_id,
            # ON CONFLICT DO UPDATE bypasses `onupdate`: Prisma's @updatedAt by hand.
            "updated_at": now,
        },
        where=CourseEnrollment.status == EnrollmentStatus.revoked,
    )
    await session.execute(statement)


async def revoke_enrollments_of_order(session: AsyncSession, *, order_id: str) -> int:
    """Revoke every active enrollment the order granted. The number revoked."""
    result = await session.execute(
        update(CourseEnrollment)
        .where(
            CourseEnrollment.order_id == order_id,
            CourseEnrollment.status == EnrollmentStatus.active,
        )
        .values(status=EnrollmentStatus.revoked)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
