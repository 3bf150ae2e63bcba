from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coursehub.core.enums import pg_enum
from coursehub.core.models import Base, CreatedAtMixin, IdMixin, TimestampsMixin, unique_index

if TYPE_CHECKING:
    from coursehub.orders.models import Order
    from coursehub.users.models import User


class CouponType(enum.StrEnum):
    percentage = "percentage"
    fixed = "fixed"


class Coupon(IdMixin, TimestampsMixin, Base):
    __tablename__ = "Coupon"
    __table_args__ = (
        unique_index("Coupon", "code"),
        # Added by migration 0006: the admins' coupon list, newest first.
        Index("Coupon_createdAt_id_idx", "createdAt", "id"),
    )

    code: Mapped[str]  # upper case
    type: Mapped[CouponType] = mapped_column(pg_enum(CouponType, "CouponType"))
    value: Mapped[Decimal]  # percent for `percentage`, rupees for `fixed`
    max_discount: Mapped[Decimal | None] = mapped_column("maxDiscount")
    min_purchase: Mapped[Decimal | None] = mapped_column("minPurchase")
    description: Mapped[str | None]
    start_date: Mapped[datetime] = mapped_column("startDate")
    end_date: Mapped[datetime] = mapped_column("endDate")
    max_uses: Mapped[int | None] = mapped_column("maxUses")  # None: unlimited
    created_by: Mapped[str] = mapped_column("createdBy")

    usage: Mapped[list[CouponUsage]] = relationship(back_populates="coupon", lazy="raise")


class CouponUsage(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "CouponUsage"
    __table_args__ = (
        unique_index("CouponUsage", "orderId"),
        Index(None, "couponId"),
        Index(None, "userId"),
    )

    coupon_id: Mapped[str] = mapped_column(
        "couponId", ForeignKey("Coupon.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(
        "userId", ForeignKey("User.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    order_id: Mapped[str] = mapped_column(
        "orderId", ForeignKey("Order.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    discount: Mapped[Decimal]  # the amount taken off that order

    coupon: Mapped[Coupon] = relationship(back_populates="usage", lazy="raise")
    user: Mapped[User] = relationship(back_populates="coupon_usages", lazy="raise")
    order: Mapped[Order] = relationship(back_populates="coupon_usage", lazy="raise")
