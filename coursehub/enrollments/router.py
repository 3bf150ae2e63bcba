"""Enrollments over HTTP: a learner's own, and the admins' grants and revocations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from coursehub.auth.dependencies import ADMIN_ERRORS, AdminUser, CodecDep, CurrentUser
from coursehub.catalog.errors import CourseNotFound
from coursehub.core.dependencies import SessionDep
from coursehub.core.errors import BadCursor, Unauthorized
from coursehub.core.problems import responses
from coursehub.enrollments import service
from coursehub.enrollments.errors import AlreadyEnrolled, EnrollmentNotActive, EnrollmentNotFound
from coursehub.enrollments.schemas import (
    AdminEnrollmentListQuery,
    EnrollmentGrant,
    EnrollmentListQuery,
    EnrollmentPageRead,
    EnrollmentRead,
    ProgressUpdate,
)
from coursehub.users.errors import UserNotFound

router = APIRouter(tags=["enrollments"])


@router.get(
    "/me/enrollments",
    response_model=EnrollmentPageRead,
    responses=responses(BadCursor, Unauthorized),
)
async def list_my_enrollments(
    session: SessionDep,
    user: CurrentUser,
    codec: CodecDep,
    query: Annotated[EnrollmentListQuery, Query()],
) -> EnrollmentPageRead:
    """Your active enrollments with their courses, newest first."""
    page = await service.list_my_enrollments(
        session, user=user, limit=query.limit, cursor=query.cursor, codec=codec
    )
    return EnrollmentPageRead.model_validate(page, from_attributes=True)


@router.patch(
    "/me/enrollments/{course_id}",
    response_model=EnrollmentRead,
    responses=responses(EnrollmentNotFound, Unauthorized),
)
async def update_my_progress(
    session: SessionDep, user: CurrentUser, course_id: str, body: ProgressUpdate
) -> EnrollmentRead:
    """Record your progress in a course: 100 marks it completed, lower clears that."""
    enrollment = await service.update_progress(session, user=user, course_id=course_id, data=body)
    return EnrollmentRead.model_validate(enrollment)


@router.get(
    "/admin/users/{user_id}/enrollments",
    response_model=EnrollmentPageRead,
    responses=responses(UserNotFound, BadCursor, *ADMIN_ERRORS),
)
async def admin_list_enrollments(
    session: SessionDep,
    admin: AdminUser,
    codec: CodecDep,
    user_id: str,
    query: Annotated[AdminEnrollmentListQuery, Query()],
) -> EnrollmentPageRead:
    """A user's enrollments, active and revoked (or `status` only), newest first."""
    page = await service.list_user_enrollments(
        session,
        user_id=user_id,
        status=query.status,
        limit=query.limit,
        cursor=query.cursor,
        codec=codec,
    )
    return EnrollmentPageRead.model_validate(page, from_attributes=True)


@router.post(
    "/admin/users/{user_id}/enrollments",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrollmentRead,
    responses=responses(UserNotFound, CourseNotFound, AlreadyEnrolled, *ADMIN_ERRORS),
)
async def admin_grant_enrollment(
    session: SessionDep, admin: AdminUser, user_id: str, body: EnrollmentGrant
) -> EnrollmentRead:
    """Enroll a user in a course without an order (orderId null); reactivates a revoked one."""
    enrollment = await service.grant_enrollment(session, user_id=user_id, course_id=body.course_id)
    return EnrollmentRead.model_validate(enrollment)


@router.post(
    "/admin/users/{user_id}/enrollments/{course_id}/revoke",
    response_model=EnrollmentRead,
    responses=responses(EnrollmentNotFound, EnrollmentNotActive, *ADMIN_ERRORS),
)
async def admin_revoke_enrollment(
    session: SessionDep, admin: AdminUser, user_id: str, course_id: str
) -> EnrollmentRead:
    """Revoke a user's active enrollment; it is kept, with its progress, as `revoked`."""
    enrollment = await service.revoke_enrollment(session, user_id=user_id, course_id=course_id)
    return EnrollmentRead.model_validate(enrollment)
