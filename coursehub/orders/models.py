from __future__ import annotations

import enum
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coursehub.core.enums import pg_enum
from coursehub.core.models import Base, CreatedAtMixin, IdMixin, TimestampsMixin, unique_index

if TYPE_CHECKING:
    from coursehub.catalog.models import Course
    from coursehub.coupons.models import CouponUsage
    from coursehub.enrollments.models import CourseEnrollment
    from coursehub.users.models import User


class OrderStatus(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    completed = "completed"
    cancelled = "cancelled"
    refunded = "refunded"


class PaymentStatus(enum.StrEnum):
    pending = "pending"
    paid = "paid"
    failed = "failed"
    refunded = "refunded"


class Order(IdMixin, TimestampsMixin, Base):
    __tablename__ = "Order"
    __table_args__ = (
        unique_index("Order", "orderNumber"),
        Index(None, "userId", "createdAt"),
        Index(None, "status"),
        # Added by migration 0004 (the admins' order list and the sales report).
        Index("Order_createdAt_id_idx", "createdAt", "id"),
        Index("Order_status_createdAt_id_idx", "status", "createdAt", "id"),
        Index("Order_paymentStatus_createdAt_id_idx", "paymentStatus", "createdAt", "id"),
        # Added by migration 0006: checkout's Idempotency-Key, kept in metadata.
        Index(
            "Order_userId_idempotencyKey_key",
            text('"userId"'),
            text("(metadata ->> 'idempotencyKey')"),
            unique=True,
            postgresql_where=text("(metadata ->> 'idempotencyKey') IS NOT NULL"),
        ),
        # Added by migration 0008: late captures still to refund (GET /admin/orders?refund_due).
        Index(
            "Order_refundDue_createdAt_id_idx",
            "createdAt",
            "id",
            postgresql_where=text("(metadata ->> 'refundDue') = 'true'"),
        ),
    )

    order_number: Mapped[str] = mapped_column("orderNumber")
    user_id: Mapped[str] = mapped_column(
        "userId", ForeignKey("User.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    status: Mapped[OrderStatus] = mapped_column(
        pg_enum(OrderStatus, "OrderStatus"),
        default=OrderStatus.pending,
        server_default=text("'pending'"),
    )
    amount: Mapped[Decimal]  # what the buyer pays: originalAmount − discount
    original_amount: Mapped[Decimal] = mapped_column("originalAmount")
    payment_method: Mapped[str | None] = mapped_column("paymentMethod")
    payment_status: Mapped[PaymentStatus] = mapped_column(
        "paymentStatus",
        pg_enum(PaymentStatus, "PaymentStatus"),
        default=PaymentStatus.pending,
        server_default=text("'pending'"),
    )
    currency: Mapped[str] = mapped_column(default="INR", server_default=text("'INR'"))
    # Any JSON value, not only an object: Prisma's `Json?`, where the Node app may have left
    # an array, a string, a number … Read keys from it and merge into it only through
    # `orders.metadata.metadata_object`.
    metadata_: Mapped[Any] = mapped_column("metadata", JSONB(), nullable=True)

    user: Mapped[User] = relationship(back_populates="orders", lazy="raise")
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    enrollments: Mapped[list[CourseEnrollment]] = relationship(
        back_populates="order", lazy="raise", passive_deletes=True
    )
    coupon_usage: Mapped[CouponUsage | None] = relationship(back_populates="order", lazy="raise")


class OrderItem(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "OrderItem"
    __table_args__ = (
        unique_index("OrderItem", "orderId", "courseId"),
        Index(None, "courseId"),
    )

    order_id: Mapped[str] = mapped_column(
        "orderId", ForeignKey("Order.id", ondelete="CASCADE", onupdate="CASCADE")
    )
    course_id: Mapped[str] = mapped_column(
        "courseId", ForeignKey("Course.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    price: Mapped[Decimal]  # the course's price when the order was placed

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise")
    course: Mapped[Course] = relationship(back_populates="order_items", lazy="raise")
