"""Enrollments' API shapes (camelCase, as the rest of the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from coursehub.core.pagination import PageQuery, PageRead
from coursehub.core.schemas import ApiModel
from coursehub.enrollments.models import EnrollmentStatus


class EnrollmentsModel(ApiModel):
    """The enrollments' API shapes."""


class EnrolledCourseRead(EnrollmentsModel):
    id: str
    title: str
    slug: str
    thumbnail: str | None
    duration: int
    category: str
    level: str


class EnrollmentRead(EnrollmentsModel):
    id: str
    user_id: str
    course_id: str
    order_id: str | None = Field(
        description="The order that granted it; null for an admin's grant."
    )
    status: EnrollmentStatus
    progress: int = Field(description="Percent, 0–100.")
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    course: EnrolledCourseRead


EnrollmentPageRead = PageRead[EnrollmentRead]


class ProgressUpdate(EnrollmentsModel):
    """100 marks the course completed (completedAt set); anything lower clears it."""

    progress: Annotated[int, Field(strict=True, ge=0, le=100, description="Percent, 0–100.")]


class EnrollmentGrant(EnrollmentsModel):
    course_id: str = Field(min_length=1, max_length=64)


EnrollmentListQuery = PageQuery


class AdminEnrollmentListQuery(EnrollmentListQuery):
    status: EnrollmentStatus | None = Field(default=None, description="Leave out for both.")
