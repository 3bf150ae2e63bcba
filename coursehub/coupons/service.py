"""Coupon rules: the admins' coupons and the buyers' preview.

How uses are counted: a coupon's uses are its CouponUsage rows, written with the
order at checkout and never deleted, whose orders are not cancelled. So "fewer than
maxUses uses, counting orders that are not cancelled" is a count of usages joined to
their orders, and "one use per user" is "no usage of (coupon, user) whose order is not
cancelled". Cancelling an order (by its buyer, a failed payment, or expiry) is all it
takes to give its use back; its usage row stays, so a cancelled order still shows its
coupon and its amounts still add up (amount = originalAmount − the usage's discount).
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import violated_constraint
from coursehub.core.errors import FieldError
from coursehub.core.models import utcnow
from coursehub.core.money import ZERO, to_paise
from coursehub.core.pagination import CursorCodec, Page, decode_time_keyset, time_keyset_page
from coursehub.coupons import repository, rules
from coursehub.coupons.errors import CouponCodeTaken, CouponInUse, CouponNotFound, InvalidCoupon
from coursehub.coupons.models import Coupon, CouponType
from coursehub.coupons.repository import CouponWithStats
from coursehub.coupons.schemas import (
    CouponCreate,
    CouponListQuery,
    CouponPreviewRead,
    CouponUpdate,
    CouponValidate,
)
from coursehub.users.models import User

CODE_CONSTRAINT = "Coupon_code_key"
LIST_CONTEXT = "coupons:admin:newest"


# --- admin: create, read, update, delete -----------------------------------------------


def _code_taken(code: str) -> CouponCodeTaken:
    return CouponCodeTaken(f"coupon code {code} is already used by another coupon")


async def create_coupon(session: AsyncSession, data: CouponCreate, *, admin: User) -> Coupon:
    if await repository.code_taken(session, data.code):
        raise _code_taken(data.code)
    coupon = Coupon(**data.model_dump(), created_by=admin.id)
    try:
        await repository.add_coupon(session, coupon)
    except IntegrityError as exc:
        if violated_constraint(exc) == CODE_CONSTRAINT:
            raise _code_taken(data.code) from None
        raise
    return coupon


async def get_coupon(session: AsyncSession, coupon_id: str) -> CouponWithStats:
    found = await repository.get_coupon_with_stats(session, coupon_id)
    if found is None:
        raise CouponNotFound(f"no coupon with id {coupon_id!r}")
    return found


def _check_consistent(coupon: Coupon) -> None:
    errors = []
    if coupon.type is CouponType.percentage and coupon.value > 100:
        errors.append(FieldError("value", "a percentage coupon's value must be at most 100"))
    if coupon.start_date >= coupon.end_date:
        errors.append(FieldError("endDate", "must be after startDate"))
    if errors:
        raise InvalidCoupon("; ".join(e.message for e in errors), errors=errors)


async def update_coupon(
    session: AsyncSession, coupon_id: str, data: CouponUpdate
) -> CouponWithStats:
    """Change only the fields sent; the coupon must still hold together (422) and keep a free
    code (409). Lowering maxUses below the uses already made is allowed: it just has none left.

    Under the coupon's claim lock (coupons/repository.py): the change waits for the
    checkouts claiming a use of it, and every claim after it sees the change. A change that
    sets a limit also holds the coupon's row FOR UPDATE: checkouts that found the coupon
    unlimited claim no use, but hold its row FOR KEY SHARE as they write their usage, so the
    change waits for those in flight (their uses then count against the new limit), and the
    ones after it see the limit and claim a use (orders/repository.py, the order's insert).
    Exact, then, even when a live unlimited coupon is given a limit."""
    changes = data.model_dump(exclude_unset=True)
    await repository.lock_claims(session, coupon_id)
    coupon = await repository.get_coupon(
        session, coupon_id, for_update=changes.get("max_uses") is not None
    )
    if coupon is None:
        raise CouponNotFound(f"no coupon with id {coupon_id!r}")
    new_code = changes.get("code")
    if new_code not in (None, coupon.code) and await repository.code_taken(
        session, new_code, except_id=coupon.id
    ):
        raise _code_taken(str(new_code))
    for name, value in changes.items():
        setattr(coupon, name, value)
    _check_consistent(coupon)
    if changes:
        coupon.updated_at = utcnow()
        try:
            await repository.flush_coupon(session)
        except IntegrityError as exc:
            if violated_constraint(exc) == CODE_CONSTRAINT:
                raise _code_taken(str(changes.get("code"))) from None
            raise
    return await get_coupon(session, coupon_id)


async def delete_coupon(session: AsyncSession, coupon_id: str) -> None:
    """Delete a coupon no order has ever used; a used one is a 409 (end it early with endDate).

    Any usage row blocks it, a cancelled order's too: the order keeps its coupon as history
    (and the usage's foreign key, RESTRICT, would refuse the delete anyway)."""
    in_use = CouponInUse(
        "the coupon has been used (by orders that may since have been cancelled), so deleting "
        "it would rewrite orders' history; end it early instead (PATCH endDate)"
    )
    await repository.lock_claims(session, coupon_id)
    if await repository.is_coupon_used(session, coupon_id):
        raise in_use
    try:
        deleted = await repository.delete_coupon(session, coupon_id)
    except IntegrityError:
        raise in_use from None  # a first use arrived between the check and the delete
    if not deleted:
        raise CouponNotFound(f"no coupon with id {coupon_id!r}")


async def list_coupons(
    session: AsyncSession, query: CouponListQuery, *, codec: CursorCodec
) -> Page[CouponWithStats]:
    after = decode_time_keyset(codec, LIST_CONTEXT, query.cursor) if query.cursor else None
    rows = await repository.list_coupons(session, after=after, limit=query.limit + 1)
    return time_keyset_page(
        rows,
        limit=query.limit,
        keyset=lambda row: (row.coupon.created_at, row.coupon.id),
        codec=codec,
        context=LIST_CONTEXT,
    )


# --- buyers: preview -------------------------------------------------------------------


async def validate_coupon(
    session: AsyncSession, data: CouponValidate, *, user: User
) -> CouponPreviewRead:
    """What the coupon would take off these courses, or the exact reason it does not apply.

    The courses must be published (as at checkout); whether the buyer may buy them is
    checkout's business. A preview reserves nothing: the last use can still go to
    someone else before this buyer checks out.
    """
    from coursehub.orders.checkout import item_prices, load_sellable_courses

    courses = await load_sellable_courses(session, data.course_ids)
    original = sum(item_prices(courses), start=ZERO)
    found = await repository.find_coupon_for_user(session, code=data.code, user_id=user.id)
    if found is None:
        raise CouponNotFound(f"there is no coupon {data.code}")
    coupon, used_by_user = found
    # `is not None`: a limit of 0 (possible in data adopted from the Node app) is a limit.
    uses = await repository.count_uses(session, coupon.id) if coupon.max_uses is not None else None
    rules.check_applies(
        coupon, original_amount=original, now=utcnow(), used_by_user=used_by_user, uses=uses
    )
    discount = rules.discount_to_apply(coupon, original)
    return CouponPreviewRead(
        code=coupon.code,
        type=coupon.type,
        value=coupon.value,
        original_amount=to_paise(original),
        discount=discount,
        amount=to_paise(original - discount),
    )
