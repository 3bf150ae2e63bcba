"""What coupons can answer with besides success.

Each reason a coupon does not apply has its own code, so a client can say exactly
why (POST /coupons/validate and checkout answer with the same ones).
"""

from __future__ import annotations

from coursehub.core.errors import Conflict, NotFound, ValidationFailed


class CouponNotFound(NotFound):
    code = "coupon_not_found"
    title = "No such coupon"


class CouponCodeTaken(Conflict):
    code = "coupon_code_taken"
    title = "The coupon code is taken"


class CouponInUse(Conflict):
    code = "coupon_in_use"
    title = "The coupon has been used"


class InvalidCoupon(ValidationFailed):
    """Fields that are each valid but do not go together (e.g. endDate before startDate)."""

    code = "invalid_coupon"
    title = "The coupon's fields do not go together"


class CouponNotStarted(ValidationFailed):
    code = "coupon_not_started"
    title = "The coupon is not valid yet"


class CouponExpired(ValidationFailed):
    code = "coupon_expired"
    title = "The coupon has expired"


class CouponNotApplicable(ValidationFailed):
    """The order costs nothing: a coupon would take nothing off yet spend a use (the
    coupon's maxUses and the buyer's one use), so it is refused rather than recorded."""

    code = "coupon_not_applicable"
    title = "The coupon does not apply to this order"


class CouponBelowMinimum(ValidationFailed):
    code = "coupon_below_minimum_purchase"
    title = "The order is below the coupon's minimum purchase"


class CouponUsedUp(Conflict):
    code = "coupon_used_up"
    title = "The coupon has no uses left"


class CouponAlreadyUsed(Conflict):
    code = "coupon_already_used"
    title = "You have already used this coupon"
