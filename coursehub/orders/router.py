"""A buyer's orders over HTTP: checkout, their orders, cancelling a pending one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status

from coursehub.auth.dependencies import CodecDep, CurrentUser, WritingUser
from coursehub.core.dependencies import SessionDep, WriteTransactionDep
from coursehub.core.errors import BadCursor, Unauthorized, ValidationFailed
from coursehub.core.problems import responses
from coursehub.coupons.errors import (
    CouponAlreadyUsed,
    CouponBelowMinimum,
    CouponExpired,
    CouponNotApplicable,
    CouponNotFound,
    CouponNotStarted,
    CouponUsedUp,
)
from coursehub.orders import checkout, service
from coursehub.orders.errors import (
    AlreadyEnrolled,
    CourseInOpenOrder,
    CourseUnavailable,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    OrderNotFound,
    OrderNotPending,
    OrderNumberExhausted,
)
from coursehub.orders.schemas import OrderCreate, OrderListQuery, OrderPageRead, OrderRead

router = APIRouter(tags=["orders"])


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        # No `max_length` here: checkout checks the key (length, printable ASCII) and
        # answers with the documented `invalid_idempotency_key`, not FastAPI's generic
        # `validation_failed`.
        description="Makes a retry safe: the same key from the same buyer returns the same "
        "order (200, `Idempotent-Replayed: true`) instead of placing a second one. "
        f"1–{checkout.IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters.",
    ),
]


# A retry with the same Idempotency-Key answers the order it placed, 200 instead of 201.
REPLAYED_RESPONSE: dict[int | str, dict[str, Any]] = {
    status.HTTP_200_OK: {
        "model": OrderRead,
        "description": "A retry with the same `Idempotency-Key` from the same buyer: the "
        "order that key placed, as it is now (even if cancelled since); nothing new is placed.",
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true`: this answers an earlier request with the same key.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    }
}


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    response_description="The order placed: pending, or completed when it costs nothing.",
    responses=REPLAYED_RESPONSE
    | responses(
        ValidationFailed,
        CourseUnavailable,
        InvalidIdempotencyKey,
        CouponNotStarted,
        CouponExpired,
        CouponBelowMinimum,
        CouponNotApplicable,
        CouponNotFound,
        AlreadyEnrolled,
        CourseInOpenOrder,
        CouponUsedUp,
        CouponAlreadyUsed,
        IdempotencyKeyReused,
        OrderNumberExhausted,
        Unauthorized,
    ),
)
async def place_order(
    user: WritingUser,
    writer: WriteTransactionDep,
    body: OrderCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderRead:
    """Check out: a pending order to pay for, or a completed one when it costs nothing."""
    # A write transaction, not a session: checkout is held to the plain-SQL floor
    # (docs/BENCHMARKS.md), and every statement of it is a DriverStatement anyway.
    result = await checkout.checkout(
        writer,
        user=user,
        course_ids=body.course_ids,
        coupon_code=body.coupon_code,
        payment_method=body.payment_method,
        idempotency_key=idempotency_key,
    )
    if result.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return OrderRead.from_order(result.order)


@router.get("/orders", response_model=OrderPageRead, responses=responses(BadCursor, Unauthorized))
async def list_orders(
    session: SessionDep,
    user: CurrentUser,
    codec: CodecDep,
    query: Annotated[OrderListQuery, Query()],
) -> OrderPageRead:
    """Your orders, newest first; pass `next_cursor` back as `cursor`."""
    page = await service.list_orders(session, user=user, query=query, codec=codec)
    return OrderPageRead(
        items=[OrderRead.from_order(order) for order in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/orders/{order_number}",
    response_model=OrderRead,
    responses=responses(OrderNotFound, Unauthorized),
)
async def get_order(session: SessionDep, user: CurrentUser, order_number: str) -> OrderRead:
    """One of your orders (another buyer's is a 404, as if it did not exist)."""
    return OrderRead.from_order(
        await service.get_order(session, user=user, order_number=order_number)
    )


@router.post(
    "/orders/{order_number}/cancel",
    response_model=OrderRead,
    responses=responses(OrderNotFound, OrderNotPending, Unauthorized),
)
async def cancel_order(session: SessionDep, user: CurrentUser, order_number: str) -> OrderRead:
    """Cancel your pending order; its coupon use is given back."""
    return OrderRead.from_order(
        await service.cancel_order(session, user=user, order_number=order_number)
    )
