"""Every model, imported once so the mappers and `Base.metadata` are complete.

Alembic, the app and the CLI import this module rather than the domains one by one.
"""

from coursehub.catalog.models import Course
from coursehub.core.models import Base
from coursehub.coupons.models import Coupon, CouponType, CouponUsage
from coursehub.enrollments.models import CourseEnrollment, EnrollmentStatus
from coursehub.orders.models import Order, OrderItem, OrderStatus, PaymentStatus
from coursehub.users.models import Role, User, UserPreference, UserProfile

__all__ = [
    "Base",
    "Coupon",
    "CouponType",
    "CouponUsage",
    "Course",
    "CourseEnrollment",
    "EnrollmentStatus",
    "Order",
    "OrderItem",
    "OrderStatus",
    "PaymentStatus",
    "Role",
    "User",
    "UserPreference",
    "UserProfile",
]
