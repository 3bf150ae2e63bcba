"""The admins' order rules: the filtered list, offline payments, refunds, cancelling an
unpaid order, and settling late captures (payments the gateway took after the order was
cancelled or expired).

mark-paid, refund and cancel lock the order row first (`payments.repository.lock_order`),
as the payment webhook does, so an admin's action and a gateway event for the same
order never interleave.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import utcnow
from coursehub.core.pagination import CursorCodec, Page, decode_time_keyset, time_keyset_page
from coursehub.enrollments.service import revoke_enrollments_for_order
from coursehub.orders import admin_repository
from coursehub.orders.admin_repository import OrderFilters
from coursehub.orders.admin_schemas import (
    AdminOrderListQuery,
    CancelRequest,
    LateCaptureRefunded,
    MarkPaid,
    RefundRequest,
)
from coursehub.orders.errors import OrderNotCancellable, OrderNotFound
from coursehub.orders.metadata import (
    LATE_CAPTURES_KEY,
    capture_payment_id,
    capture_settled,
    late_captures,
    metadata_object,
)
from coursehub.orders.models import Order, OrderStatus, PaymentStatus
from coursehub.orders.transitions import CANCELLABLE, UNPAID, move_order
from coursehub.payments import repository as payments_repository
from coursehub.payments.errors import NoRefundDue, OrderAlreadyPaid, OrderNotRefundable
from coursehub.payments.service import MARKED_PAID_VIA, record_payment
from coursehub.users.models import User

logger = logging.getLogger("coursehub.orders")

CURSOR_CONTEXT = "orders:admin"


def _filters(query: AdminOrderListQuery) -> OrderFilters:
    return OrderFilters(
        status=query.status,
        payment_status=query.payment_status,
        refund_due=query.refund_due,
        user_id=query.user_id,
        coupon_id=query.coupon_id,
        coupon_code=query.coupon_code,
        starts_at=query.starts_at,
        ends_at=query.ends_at,
    )


def _cursor_context(filters: OrderFilters) -> str:
    # Bound to the filters: a cursor reused with other filters is a 400, not a wrong page.
    parts = [
        f"{name}={value.isoformat() if isinstance(value, datetime) else value}"
        for name, value in vars(filters).items()
    ]
    return CURSOR_CONTEXT + ":" + "&".join(parts)


async def list_orders(
    session: AsyncSession, query: AdminOrderListQuery, *, codec: CursorCodec
) -> Page[Order]:
    """Every order matching the filters, newest first."""
    filters = _filters(query)
    context = _cursor_context(filters)
    after = decode_time_keyset(codec, context, query.cursor) if query.cursor else None
    rows = await admin_repository.list_orders(
        session, filters=filters, after=after, limit=query.limit + 1
    )
    return time_keyset_page(
        rows,
        limit=query.limit,
        keyset=lambda order: (order.created_at, order.id),
        codec=codec,
        context=context,
    )


async def get_order(session: AsyncSession, order_number: str) -> Order:
    order = await admin_repository.get_order(session, order_number)
    if order is None:
        raise OrderNotFound(f"no order {order_number!r}")
    return order


async def _lock(session: AsyncSession, order_number: str) -> Order:
    order = await payments_repository.lock_order(session, order_number)
    if order is None:
        raise OrderNotFound(f"no order {order_number!r}")
    return order


async def mark_paid(
    session: AsyncSession, order_number: str, data: MarkPaid, *, admin: User
) -> Order:
    """Record an offline payment: the same effects as the gateway's capture (completed,
    paid, enrollments granted). 409 if it is already paid, or cancelled or refunded."""
    order = await _lock(session, order_number)
    if order.payment_status in (PaymentStatus.paid, PaymentStatus.refunded):
        raise OrderAlreadyPaid(
            f"order {order_number} is already paid",
            extra={"orderNumber": order_number, "paymentStatus": order.payment_status.value},
        )
    details: dict[str, str] = {"via": MARKED_PAID_VIA, "markedPaidBy": admin.id}
    if data.reference is not None:
        details["paymentReference"] = data.reference
    await record_payment(
        session, order, payment_id=None, method=data.payment_method, details=details
    )
    logger.info(
        "order %s marked paid (%s) by admin %s", order_number, data.payment_method, admin.id
    )
    return await get_order(session, order_number)


async def refund(
    session: AsyncSession, order_number: str, data: RefundRequest, *, admin: User
) -> Order:
    """Refund a completed, paid order: refunded/refunded, its enrollments revoked, the
    reason kept in metadata. 409 from any other state."""
    order = await _lock(session, order_number)
    if order.status != OrderStatus.completed or order.payment_status != PaymentStatus.paid:
        raise OrderNotRefundable(
            f"order {order_number} is {order.status.value} with payment "
            f"{order.payment_status.value}; only a completed, paid order can be refunded",
            extra={
                "orderNumber": order_number,
                "orderStatus": order.status.value,
                "paymentStatus": order.payment_status.value,
            },
        )
    move_order(order, OrderStatus.refunded)
    order.payment_status = PaymentStatus.refunded
    order.metadata_ = {
        **metadata_object(order.metadata_),
        "refund": {
            "reason": data.reason,
            "refundedAt": utcnow().isoformat(),
            "refundedBy": admin.id,
        },
    }
    await session.flush()
    revoked = await revoke_enrollments_for_order(session, order_id=order.id)
    logger.info(
        "order %s refunded by admin %s (%d enrollments revoked)", order_number, admin.id, revoked
    )
    return await get_order(session, order_number)


async def cancel(
    session: AsyncSession, order_number: str, data: CancelRequest, *, admin: User
) -> Order:
    """Cancel an unpaid order, pending or processing: what a buyer can do to a pending one,
    and the only way out of `processing` (a state the Node app left orders in, with no
    webhook to come) short of a payment. Its coupon use stops counting and its courses can
    be bought again. 409 from any other state, or once paid (refund it instead). A payment
    the gateway captures afterwards is flagged for a refund, as after any cancellation."""
    order = await _lock(session, order_number)
    if order.status not in CANCELLABLE or order.payment_status not in UNPAID:
        raise OrderNotCancellable(
            f"order {order_number} is {order.status.value} with payment "
            f"{order.payment_status.value}; only an unpaid pending or processing order can be "
            "cancelled",
            extra={
                "orderNumber": order_number,
                "orderStatus": order.status.value,
                "paymentStatus": order.payment_status.value,
            },
        )
    now = utcnow()
    move_order(order, OrderStatus.cancelled)
    order.metadata_ = {
        **metadata_object(order.metadata_),
        "cancelReason": "cancelled_by_admin",
        "cancellation": {
            "reason": data.reason,
            "cancelledAt": now.isoformat(),
            "cancelledBy": admin.id,
        },
    }
    order.updated_at = now
    await session.flush()
    logger.info("order %s cancelled by admin %s", order_number, admin.id)
    return await get_order(session, order_number)


async def mark_late_capture_refunded(
    session: AsyncSession, order_number: str, data: LateCaptureRefunded, *, admin: User
) -> Order:
    """Record that some late captures of an order (flagged `refundDue` by the webhook) were
    refunded at the gateway: each named capture gets `refundedAt`, `refundedBy` and the
    reference. Only the named ones: a capture that arrived after the admin looked stays due.
    `refundDue` stays true while any capture is unsettled. 409, changing nothing, when a
    named capture is unknown or already settled."""
    order = await _lock(session, order_number)
    metadata = metadata_object(order.metadata_)
    captures = late_captures(metadata)
    due = {capture_payment_id(c) for c in captures if not capture_settled(c)}
    not_due = [payment_id for payment_id in data.payment_ids if payment_id not in due]
    if not_due:
        raise NoRefundDue(
            f"order {order_number} has no late capture waiting for a refund with payment id "
            + ", ".join(not_due),
            extra={"orderNumber": order_number, "paymentIds": not_due},
        )
    settled: dict[str, str] = {"refundedAt": utcnow().isoformat(), "refundedBy": admin.id}
    if data.reference is not None:
        settled["refundReference"] = data.reference
    named = set(data.payment_ids)
    captures = [{**c, **settled} if capture_payment_id(c) in named else c for c in captures]
    metadata[LATE_CAPTURES_KEY] = captures
    metadata["refundDue"] = not all(capture_settled(c) for c in captures)
    order.metadata_ = metadata
    await session.flush()
    logger.info(
        "late captures %s of order %s refunded, recorded by admin %s",
        ", ".join(data.payment_ids),
        order_number,
        admin.id,
    )
    return await get_order(session, order_number)
