from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import Index, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import Text

from coursehub.core.models import Base, IdMixin, TimestampsMixin, unique_index

if TYPE_CHECKING:
    from coursehub.enrollments.models import CourseEnrollment
    from coursehub.orders.models import OrderItem


class Course(IdMixin, TimestampsMixin, Base):
    __tablename__ = "Course"
    __table_args__ = (
        unique_index("Course", "slug"),
        Index(None, "isPublished", "createdAt"),
        Index(None, "category"),
        # Added by migration 0003 (catalogue search and keyset sort orders).
        Index(
            "Course_search_idx",
            func.course_search_document(text('"title"'), text('"description"'), text('"features"')),
            postgresql_using="gin",
        ),
        Index("Course_createdAt_id_idx", "createdAt", "id"),
        Index("Course_price_id_idx", "price", "id"),
        Index("Course_title_id_idx", "title", "id"),
        Index(
            "Course_published_category_createdAt_id_idx",
            "category",
            "createdAt",
            "id",
            postgresql_where=text('"isPublished"'),
        ),
        # Added by migration 0007: GET /categories, an index-only scan.
        Index("Course_published_category_idx", "category", postgresql_where=text('"isPublished"')),
        Index(
            "Course_featured_createdAt_id_idx",
            "createdAt",
            "id",
            postgresql_where=text('"isFeatured"'),
        ),
        # Added by migration 0009: the slugs `base-…` taken, in byte order.
        Index("Course_slug_pattern_idx", "slug", postgresql_ops={"slug": "text_pattern_ops"}),
    )

    title: Mapped[str]
    slug: Mapped[str]
    description: Mapped[str | None]
    thumbnail: Mapped[str | None]
    duration: Mapped[int]  # minutes
    price: Mapped[Decimal]  # rupees, two decimals
    # Prisma leaves scalar lists nullable; the store always writes a list.
    features: Mapped[list[str] | None] = mapped_column(ARRAY(Text()), default=list)
    category: Mapped[str]
    level: Mapped[str]
    is_published: Mapped[bool] = mapped_column(
        "isPublished", default=False, server_default=text("false")
    )
    is_featured: Mapped[bool] = mapped_column(
        "isFeatured", default=False, server_default=text("false")
    )
    created_by: Mapped[str] = mapped_column("createdBy")  # the admin's id; no foreign key

    enrollments: Mapped[list[CourseEnrollment]] = relationship(
        back_populates="course", lazy="raise"
    )
    order_items: Mapped[list[OrderItem]] = relationship(back_populates="course", lazy="raise")
