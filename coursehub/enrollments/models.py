from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coursehub.core.enums import pg_enum
from coursehub.core.models import Base, IdMixin, TimestampsMixin, unique_index

if TYPE_CHECKING:
    from coursehub.catalog.models import Course
    from coursehub.orders.models import Order
    from coursehub.users.models import User


class EnrollmentStatus(enum.StrEnum):
    active = "active"
    revoked = "revoked"


class CourseEnrollment(IdMixin, TimestampsMixin, Base):
    __tablename__ = "CourseEnrollment"
    __table_args__ = (
        unique_index("CourseEnrollment", "userId", "courseId"),
        Index(None, "courseId"),
        Index(None, "orderId"),
        # Added by migration 0004: a learner's enrollments, newest first.
        Index("CourseEnrollment_userId_createdAt_id_idx", "userId", "createdAt", "id"),
    )

    user_id: Mapped[str] = mapped_column(
        "userId", ForeignKey("User.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    course_id: Mapped[str] = mapped_column(
        "courseId", ForeignKey("Course.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    # The order that granted it; null for a grant by an admin.
    order_id: Mapped[str | None] = mapped_column(
        "orderId", ForeignKey("Order.id", ondelete="SET NULL", onupdate="CASCADE")
    )
    status: Mapped[EnrollmentStatus] = mapped_column(
        pg_enum(EnrollmentStatus, "EnrollmentStatus"),
        default=EnrollmentStatus.active,
        server_default=text("'active'"),
    )
    progress: Mapped[int] = mapped_column(default=0, server_default=text("0"))  # percent
    completed_at: Mapped[datetime | None] = mapped_column("completedAt")

    user: Mapped[User] = relationship(back_populates="enrollments", lazy="raise")
    course: Mapped[Course] = relationship(back_populates="enrollments", lazy="raise")
    order: Mapped[Order | None] = relationship(back_populates="enrollments", lazy="raise")
