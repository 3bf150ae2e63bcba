"""Coupons over HTTP: managed by admins, previewed by signed-in buyers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from coursehub.auth.dependencies import ADMIN_ERRORS, AdminUser, CodecDep, CurrentUser
from coursehub.core.dependencies import SessionDep
from coursehub.core.errors import BadCursor, Unauthorized
from coursehub.core.money import ZERO
from coursehub.core.problems import responses
from coursehub.coupons import service
from coursehub.coupons.errors import (
    CouponAlreadyUsed,
    CouponBelowMinimum,
    CouponCodeTaken,
    CouponExpired,
    CouponInUse,
    CouponNotApplicable,
    CouponNotFound,
    CouponNotStarted,
    CouponUsedUp,
    InvalidCoupon,
)
from coursehub.coupons.repository import CouponWithStats
from coursehub.coupons.schemas import (
    CouponCreate,
    CouponListQuery,
    CouponPageRead,
    CouponPreviewRead,
    CouponRead,
    CouponUpdate,
    CouponValidate,
)
from coursehub.orders.errors import CourseUnavailable

router = APIRouter(tags=["coupons"])


def coupon_read(found: CouponWithStats) -> CouponRead:
    coupon = found.coupon
    remaining = None if coupon.max_uses is None else max(0, coupon.max_uses - found.uses)
    return CouponRead.model_validate(
        {
            **{
                name: getattr(coupon, name)
                for name in CouponRead.model_fields
                if hasattr(coupon, name)
            },
            "uses": found.uses,
            "remaining_uses": remaining,
            "total_discount": found.total_discount,
        }
    )


@router.post(
    "/coupons/validate",
    response_model=CouponPreviewRead,
    responses=responses(
        CouponNotFound,
        CourseUnavailable,
        CouponNotStarted,
        CouponExpired,
        CouponBelowMinimum,
        CouponNotApplicable,
        CouponUsedUp,
        CouponAlreadyUsed,
        Unauthorized,
    ),
)
async def validate_coupon(
    session: SessionDep, user: CurrentUser, body: CouponValidate
) -> CouponPreviewRead:
    """What the coupon takes off these courses, or exactly why it does not apply (by `code`)."""
    return await service.validate_coupon(session, body, user=user)


@router.get(
    "/admin/coupons", response_model=CouponPageRead, responses=responses(BadCursor, *ADMIN_ERRORS)
)
async def admin_list_coupons(
    session: SessionDep,
    admin: AdminUser,
    codec: CodecDep,
    query: Annotated[CouponListQuery, Query()],
) -> CouponPageRead:
    """Every coupon, newest first, with its uses, remaining uses and discount given."""
    page = await service.list_coupons(session, query, codec=codec)
    return CouponPageRead(
        items=[coupon_read(found) for found in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/admin/coupons",
    status_code=status.HTTP_201_CREATED,
    response_model=CouponRead,
    responses=responses(CouponCodeTaken, *ADMIN_ERRORS),
)
async def admin_create_coupon(
    session: SessionDep, admin: AdminUser, body: CouponCreate
) -> CouponRead:
    coupon = await service.create_coupon(session, body, admin=admin)
    return coupon_read(CouponWithStats(coupon, 0, ZERO))


@router.get(
    "/admin/coupons/{coupon_id}",
    response_model=CouponRead,
    responses=responses(CouponNotFound, *ADMIN_ERRORS),
)
async def admin_get_coupon(session: SessionDep, admin: AdminUser, coupon_id: str) -> CouponRead:
    return coupon_read(await service.get_coupon(session, coupon_id))


@router.patch(
    "/admin/coupons/{coupon_id}",
    response_model=CouponRead,
    responses=responses(CouponNotFound, CouponCodeTaken, InvalidCoupon, *ADMIN_ERRORS),
)
async def admin_update_coupon(
    session: SessionDep, admin: AdminUser, coupon_id: str, body: CouponUpdate
) -> CouponRead:
    """Change the fields sent; end a coupon early by moving its endDate."""
    return coupon_read(await service.update_coupon(session, coupon_id, body))


@router.delete(
    "/admin/coupons/{coupon_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(CouponNotFound, CouponInUse, *ADMIN_ERRORS),
)
async def admin_delete_coupon(session: SessionDep, admin: AdminUser, coupon_id: str) -> None:
    """Delete a coupon nobody has used; a used one is a 409 (end it early instead)."""
    await service.delete_coupon(session, coupon_id)
