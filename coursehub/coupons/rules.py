"""The coupon rules that need no database: the discount, and whether a coupon applies.

Shared by checkout and POST /coupons/validate, so both say the same thing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from coursehub.core.money import ZERO, to_paise
from coursehub.coupons.errors import (
    CouponAlreadyUsed,
    CouponBelowMinimum,
    CouponExpired,
    CouponNotApplicable,
    CouponNotStarted,
    CouponUsedUp,
)
from coursehub.coupons.models import CouponType


class DiscountTerms(Protocol):
    """What a discount is computed from: a Coupon, or the bulk seeder's coupon rows."""

    @property
    def type(self) -> CouponType: ...
    @property
    def value(self) -> Decimal: ...
    @property
    def max_discount(self) -> Decimal | None: ...


class CouponRules(DiscountTerms, Protocol):
    """What the rules read of a coupon: a Coupon, or checkout's `CouponOffer`."""

    @property
    def code(self) -> str: ...
    @property
    def min_purchase(self) -> Decimal | None: ...
    @property
    def start_date(self) -> datetime: ...
    @property
    def end_date(self) -> datetime: ...
    @property
    def max_uses(self) -> int | None: ...


def discount_for(coupon: DiscountTerms, original_amount: Decimal) -> Decimal:
    """What the coupon takes off `original_amount`, half-up to the paisa.

    Percentage: original × value / 100, capped at maxDiscount. Fixed: min(value,
    original). Never more than the original, never negative.
    """
    original = to_paise(original_amount)
    if coupon.type is CouponType.percentage:
        discount = to_paise(original * coupon.value / 100)
        if coupon.max_discount is not None:
            discount = min(discount, to_paise(coupon.max_discount))
    else:
        discount = min(to_paise(coupon.value), original)
    return max(ZERO, min(discount, original))


def discount_to_apply(coupon: CouponRules, original_amount: Decimal) -> Decimal:
    """`discount_for`, once `check_applies` has passed; a coupon that would take nothing
    off this order (a maxDiscount of 0, or a percentage that rounds to less than a paisa)
    is refused, as on a free order: it would spend the buyer's one use, and one of its
    maxUses, for nothing."""
    discount = discount_for(coupon, original_amount)
    if discount <= ZERO:
        raise CouponNotApplicable(
            f"coupon {coupon.code} takes nothing off this order (remove it, or keep it for another)"
        )
    return discount


def check_applies(
    coupon: CouponRules,
    *,
    original_amount: Decimal,
    now: datetime,
    used_by_user: bool,
    uses: int | None = None,
) -> None:
    """Raise the exact reason the coupon does not apply, in the order a buyer can act on.

    `uses`: the current count, when the caller has it (the race-free check happens
    again under the coupon's lock at checkout).
    """
    if original_amount <= ZERO:
        # First: whatever else is true of the coupon, a free order has no use for it.
        raise CouponNotApplicable(
            f"this order is free; no coupon needed (remove coupon {coupon.code})"
        )
    if now < coupon.start_date:
        raise CouponNotStarted(
            f"coupon {coupon.code} is valid from {coupon.start_date.isoformat()}",
            extra={"startDate": coupon.start_date.isoformat()},
        )
    if now > coupon.end_date:
        raise CouponExpired(
            f"coupon {coupon.code} expired at {coupon.end_date.isoformat()}",
            extra={"endDate": coupon.end_date.isoformat()},
        )
    # The minimum as shown, to the paisa: a Node-era minimum of more places (500.123) must
    # not refuse a purchase of what the message calls the minimum (500.12).
    minimum = to_paise(coupon.min_purchase) if coupon.min_purchase is not None else None
    if minimum is not None and original_amount < minimum:
        raise CouponBelowMinimum(
            f"coupon {coupon.code} needs a purchase of at least {minimum} INR; "
            f"this one is {to_paise(original_amount)} INR",
            extra={"minPurchase": str(minimum)},
        )
    if used_by_user:
        raise CouponAlreadyUsed(f"you have already used coupon {coupon.code}")
    if uses is not None:
        check_not_used_up(coupon, max_uses=coupon.max_uses, uses=uses)


def check_not_used_up(coupon: CouponRules, *, max_uses: int | None, uses: int) -> None:
    if max_uses is not None and uses >= max_uses:
        raise CouponUsedUp(
            f"coupon {coupon.code} has been used {max_uses} times, its limit",
            extra={"maxUses": max_uses},
        )
