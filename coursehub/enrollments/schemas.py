"""Enrollments' API shapes (camelCase, as the rest of the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from coursehub.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRead
from coursehub.enrollments.models import EnrollmentStatus


class EnrollmentsModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True, extra="forbid"
    )


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


class EnrollmentListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class AdminEnrollmentListQuery(EnrollmentListQuery):
    status: EnrollmentStatus | None = Field(default=None, description="Leave out for both.")
