from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coursehub.core.enums import pg_enum
from coursehub.core.models import Base, IdMixin, TimestampsMixin, unique_index

if TYPE_CHECKING:
    from coursehub.coupons.models import CouponUsage
    from coursehub.enrollments.models import CourseEnrollment
    from coursehub.orders.models import Order


class Role(enum.StrEnum):
    user = "user"
    admin = "admin"


class User(IdMixin, TimestampsMixin, Base):
    __tablename__ = "User"
    __table_args__ = (
        unique_index("User", "email"),
        unique_index("User", "username"),
        # Added by migration 0005: case-insensitive sign-in and prefix search (rows from
        # the Node app may be mixed-case), and the admins' keyset-paginated list.
        Index(
            "User_email_lower_idx",
            func.lower(text('"email"')).label("email_lower"),
            postgresql_ops={"email_lower": "text_pattern_ops"},
        ),
        Index(
            "User_username_lower_idx",
            func.lower(text('"username"')).label("username_lower"),
            postgresql_ops={"username_lower": "text_pattern_ops"},
        ),
        Index("User_createdAt_id_idx", "createdAt", "id"),
        Index("User_role_createdAt_id_idx", "role", "createdAt", "id"),
    )

    email: Mapped[str]
    username: Mapped[str]
    password: Mapped[str]  # an argon2id hash, or a bcrypt one carried over from Node
    role: Mapped[Role] = mapped_column(
        pg_enum(Role, "Role"), default=Role.user, server_default=text("'user'")
    )

    profile: Mapped[UserProfile | None] = relationship(back_populates="user", lazy="raise")
    preferences: Mapped[UserPreference | None] = relationship(back_populates="user", lazy="raise")
    orders: Mapped[list[Order]] = relationship(back_populates="user", lazy="raise")
    enrollments: Mapped[list[CourseEnrollment]] = relationship(back_populates="user", lazy="raise")
    coupon_usages: Mapped[list[CouponUsage]] = relationship(back_populates="user", lazy="raise")


class UserProfile(IdMixin, TimestampsMixin, Base):
    __tablename__ = "UserProfile"
    __table_args__ = (unique_index("UserProfile", "userId"),)

    user_id: Mapped[str] = mapped_column(
        "userId", ForeignKey("User.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    first_name: Mapped[str | None] = mapped_column("firstName")
    last_name: Mapped[str | None] = mapped_column("lastName")
    bio: Mapped[str | None]
    phone_number: Mapped[str | None] = mapped_column("phoneNumber")

    user: Mapped[User] = relationship(back_populates="profile", lazy="raise")


class UserPreference(IdMixin, TimestampsMixin, Base):
    __tablename__ = "UserPreference"
    __table_args__ = (unique_index("UserPreference", "userId"),)

    user_id: Mapped[str] = mapped_column(
        "userId", ForeignKey("User.id", ondelete="RESTRICT", onupdate="CASCADE")
    )
    theme: Mapped[str] = mapped_column(default="light", server_default=text("'light'"))
    language: Mapped[str] = mapped_column(default="en", server_default=text("'en'"))
    notifications: Mapped[bool] = mapped_column(default=True, server_default=text("true"))

    user: Mapped[User] = relationship(back_populates="preferences", lazy="raise")
