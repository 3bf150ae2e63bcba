"""The catalogue over HTTP: browsing for everyone, managing for admins.

The public reads (courses, a course, categories) run on a read connection, not a
session: no transaction, and no session's CPU (docs/BENCHMARKS.md).

GET responses carry an ETag and answer a matching If-None-Match with 304 (`ETagRoute`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from coursehub.auth.dependencies import ADMIN_ERRORS, AdminUser, CodecDep, OptionalViewer, Public
from coursehub.catalog import service
from coursehub.catalog.errors import CourseInUse, CourseNotFound, SlugTaken
from coursehub.catalog.etag import ETagRoute
from coursehub.catalog.schemas import (
    AdminCourseListQuery,
    AdminCoursePageRead,
    AdminCourseRead,
    CategoryListRead,
    CourseCreate,
    CourseListQuery,
    CoursePageRead,
    CourseRead,
    CourseUpdate,
)
from coursehub.core.dependencies import ReadConnectionDep, SessionDep
from coursehub.core.errors import BadCursor, Unauthorized
from coursehub.core.problems import responses

router = APIRouter(tags=["catalogue"], route_class=ETagRoute)


@router.get(
    "/courses",
    dependencies=[Public],
    response_model=CoursePageRead,
    responses=responses(BadCursor),
)
async def list_courses(
    reader: ReadConnectionDep, codec: CodecDep, query: Annotated[CourseListQuery, Query()]
) -> CoursePageRead:
    """Published courses, filtered and sorted; pass `next_cursor` back as `cursor`."""
    page = await service.list_published_courses(reader, query, codec=codec)
    return CoursePageRead.model_validate(page, from_attributes=True)


@router.get(
    "/courses/{slug}",
    dependencies=[Public],
    response_model=CourseRead,
    responses=responses(CourseNotFound, Unauthorized),
)
async def get_course(reader: ReadConnectionDep, slug: str, viewer: OptionalViewer) -> CourseRead:
    """A published course by slug; admins also see drafts."""
    course = await service.get_published_course(reader, slug, viewer=viewer)
    return CourseRead.model_validate(course)


@router.get("/categories", dependencies=[Public], response_model=CategoryListRead)
async def list_categories(reader: ReadConnectionDep) -> CategoryListRead:
    """The categories of published courses, with how many each has."""
    counts = await service.list_categories(reader)
    return CategoryListRead.model_validate(
        {"items": [{"category": category, "count": count} for category, count in counts]}
    )


@router.get(
    "/admin/courses",
    response_model=AdminCoursePageRead,
    responses=responses(BadCursor, *ADMIN_ERRORS),
)
async def admin_list_courses(
    session: SessionDep,
    admin: AdminUser,
    codec: CodecDep,
    query: Annotated[AdminCourseListQuery, Query()],
) -> AdminCoursePageRead:
    """Every course, drafts included; `published` narrows to one side."""
    page = await service.list_all_courses(session, query, codec=codec)
    return AdminCoursePageRead.model_validate(page, from_attributes=True)


@router.post(
    "/admin/courses",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminCourseRead,
    responses=responses(SlugTaken, *ADMIN_ERRORS),
)
async def admin_create_course(
    session: SessionDep, admin: AdminUser, body: CourseCreate
) -> AdminCourseRead:
    """Create a course, a draft unless `isPublished`; without a slug, one comes from the title."""
    course = await service.create_course(session, body, admin=admin)
    return AdminCourseRead.model_validate(course)


@router.get(
    "/admin/courses/{course_id}",
    response_model=AdminCourseRead,
    responses=responses(CourseNotFound, *ADMIN_ERRORS),
)
async def admin_get_course(
    session: SessionDep, admin: AdminUser, course_id: str
) -> AdminCourseRead:
    course = await service.get_course(session, course_id)
    return AdminCourseRead.model_validate(course)


@router.patch(
    "/admin/courses/{course_id}",
    response_model=AdminCourseRead,
    responses=responses(CourseNotFound, SlugTaken, *ADMIN_ERRORS),
)
async def admin_update_course(
    session: SessionDep, admin: AdminUser, course_id: str, body: CourseUpdate
) -> AdminCourseRead:
    """Change the fields sent; publish, unpublish and feature here."""
    course = await service.update_course(session, course_id, body)
    return AdminCourseRead.model_validate(course)


@router.delete(
    "/admin/courses/{course_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(CourseNotFound, CourseInUse, *ADMIN_ERRORS),
)
async def admin_delete_course(session: SessionDep, admin: AdminUser, course_id: str) -> None:
    """Delete a course nobody ordered or enrolled in; otherwise unpublish it instead (409)."""
    await service.delete_course(session, course_id)
