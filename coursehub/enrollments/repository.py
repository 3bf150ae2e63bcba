"""Queries on course enrollments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, Text, and_, bindparam, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.sql.selectable import ScalarSelect

from coursehub.core.models import new_id, utcnow
from coursehub.core.pagination import TimeKeyset
from coursehub.core.sql import DriverStatement, Writer

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller imports only this module.
from coursehub.models import Course, CourseEnrollment, EnrollmentStatus, User


def _upsert_active_enrollments() -> Any:
    """The upsert below, built once: the new rows are one `unnest` of arrays, so the
    statement is the same (and prepared once) for any number of courses."""
    table = cast(Table, CourseEnrollment.__table__)
    now = bindparam("now", type_=table.c.createdAt.type)
    rows = (
        func.unnest(bindparam("ids", type_=ARRAY(Text)), bindparam("course_ids", type_=ARRAY(Text)))
        .table_valued("id", "course_id")
        .render_derived(name="new_rows")
    )
    statement = insert(table).from_select(
        ["id", "userId", "courseId", "orderId", "status", "progress", "createdAt", "updatedAt"],
        select(
            rows.c.id,
            bindparam("user_id", type_=Text),
            rows.c.course_id,
            bindparam("order_id", type_=Text),
            literal(EnrollmentStatus.active, table.c.status.type),
            literal(0, table.c.progress.type),
            now,
            now,
        ),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.userId, table.c.courseId],
        set_={
            "status": literal(EnrollmentStatus.active, table.c.status.type),
            "orderId": statement.excluded["orderId"],
            # ON CONFLICT DO UPDATE bypasses `onupdate`: Prisma's @updatedAt by hand.
            "updatedAt": now,
        },
        where=or_(
            table.c.status == EnrollmentStatus.revoked,
            and_(table.c.status == EnrollmentStatus.active, table.c.orderId.is_(None)),
        ),
    )


_UPSERT_ACTIVE_ENROLLMENTS_SQL = DriverStatement(_upsert_active_enrollments())


async def upsert_active_enrollments(
    writer: Writer, *, user_id: str, course_ids: Sequence[str], order_id: str | None
) -> None:
    """Make the user actively enrolled in each course, in one statement.

    A revoked enrollment for the same course is reactivated and pointed at this
    order. An active one granted by an admin (no order) while this order was pending is
    pointed at this order too, so the paid order owns an enrollment (and its refund
    revokes it); its progress and completedAt are kept. An active one held through
    another order is left as it is.
    """
    if not course_ids:
        return
    await _UPSERT_ACTIVE_ENROLLMENTS_SQL.fetch_in_transaction(
        writer,
        ids=[new_id() for _ in course_ids],
        course_ids=list(course_ids),
        user_id=user_id,
        order_id=order_id,
        now=utcnow(),
    )


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


async def list_enrollments(
    session: AsyncSession,
    *,
    user_id: str,
    status: EnrollmentStatus | None,
    after: TimeKeyset | None,
    limit: int,
) -> list[CourseEnrollment]:
    """One page of a user's enrollments with their courses, newest first, in one query
    (CourseEnrollment_userId_createdAt_id_idx serves the order and the keyset)."""
    statement = (
        select(CourseEnrollment)
        .options(joinedload(CourseEnrollment.course))
        .where(CourseEnrollment.user_id == user_id)
    )
    if status is not None:
        statement = statement.where(CourseEnrollment.status == status)
    if after is not None:
        # `< after`, a plain tuple: its time binds as the column's type (timestamp without
        # time zone); `tuple_(*after)` typed it from the aware datetime (timestamptz), and
        # the column was then converted by the session's TimeZone.
        statement = statement.where(
            tuple_(CourseEnrollment.created_at, CourseEnrollment.id) < after
        )
    statement = statement.order_by(
        CourseEnrollment.created_at.desc(), CourseEnrollment.id.desc()
    ).limit(limit)
    return list((await session.execute(statement)).scalars())


async def get_enrollment(
    session: AsyncSession, *, user_id: str, course_id: str, lock: bool = False
) -> CourseEnrollment | None:
    """The user's enrollment in the course (any status), with its course.

    `lock`: `FOR UPDATE` of the enrollment row, for a read-modify-write.
    """
    statement = (
        select(CourseEnrollment)
        .options(joinedload(CourseEnrollment.course))
        .where(CourseEnrollment.user_id == user_id, CourseEnrollment.course_id == course_id)
        .execution_options(populate_existing=True)
    )
    if lock:
        statement = statement.with_for_update(of=CourseEnrollment)
    return (await session.execute(statement)).scalar_one_or_none()


def _key_share(model: type[User] | type[Course], id_: str) -> ScalarSelect[str]:
    """The row's id if it exists, locked FOR KEY SHARE: the lock an insert's foreign-key
    check takes, so it conflicts with a deletion and with nothing else (a checkout, a
    profile or course edit go on)."""
    return (
        select(model.id)
        .where(model.id == id_)
        .with_for_update(read=True, key_share=True)
        .scalar_subquery()
    )


async def hold_user_and_course(
    session: AsyncSession, *, user_id: str, course_id: str
) -> tuple[bool, bool]:
    """Whether the user and the course exist, both rows locked FOR KEY SHARE until the
    transaction ends, in one statement. A deletion in flight is waited for and then seen
    (READ COMMITTED re-checks a row that changed while the lock was awaited), so the
    caller answers 404 instead of its insert failing the foreign key; a deletion that
    starts later waits for this transaction."""
    row = (
        await session.execute(
            select(
                _key_share(User, user_id).is_not(None),
                _key_share(Course, course_id).is_not(None),
            )
        )
    ).one()
    return bool(row[0]), bool(row[1])


async def grant_enrollment_without_order(
    session: AsyncSession, *, user_id: str, course_id: str
) -> bool:
    """An admin's grant, in one statement: insert an active enrollment with no order, or
    reactivate a revoked one (detaching it from its old order). False if the user was
    already actively enrolled (nothing changed)."""
    now = utcnow()
    statement = insert(CourseEnrollment).values(
        id=new_id(),
        user_id=user_id,
        course_id=course_id,
        order_id=None,
        status=EnrollmentStatus.active,
        progress=0,
        created_at=now,
        updated_at=now,
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[CourseEnrollment.user_id, CourseEnrollment.course_id],
        set_={
            CourseEnrollment.status: EnrollmentStatus.active,
            CourseEnrollment.order_id: None,
            CourseEnrollment.updated_at: now,
        },
        where=CourseEnrollment.status == EnrollmentStatus.revoked,
    ).returning(CourseEnrollment.id)
    return (await session.execute(upsert)).scalar_one_or_none() is not None


async def revoke_enrollment(session: AsyncSession, *, user_id: str, course_id: str) -> bool:
    """Revoke the user's active enrollment in the course. False if there was none."""
    result = await session.execute(
        update(CourseEnrollment)
        .where(
            CourseEnrollment.user_id == user_id,
            CourseEnrollment.course_id == course_id,
            CourseEnrollment.status == EnrollmentStatus.active,
        )
        .values(status=EnrollmentStatus.revoked)
        .returning(CourseEnrollment.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None
