"""The admins' orders: the filtered list, one order, offline payments, refunds,
cancelling unpaid orders, and settling late captures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coursehub.auth.dependencies import ADMIN_ERRORS, AdminUser, CodecDep
from coursehub.core.dependencies import SessionDep
from coursehub.core.errors import BadCursor
from coursehub.core.problems import responses
from coursehub.orders import admin_service
from coursehub.orders.admin_schemas import (
    AdminOrderListQuery,
    AdminOrderPageRead,
    AdminOrderRead,
    CancelRequest,
    LateCaptureRefunded,
    MarkPaid,
    RefundRequest,
)
from coursehub.orders.errors import InvalidOrderTransition, OrderNotCancellable, OrderNotFound
from coursehub.payments.errors import NoRefundDue, OrderAlreadyPaid, OrderNotRefundable

router = APIRouter(tags=["orders (admin)"])


@router.get(
    "/admin/orders",
    response_model=AdminOrderPageRead,
    responses=responses(BadCursor, *ADMIN_ERRORS),
)
async def admin_list_orders(
    session: SessionDep,
    admin: AdminUser,
    codec: CodecDep,
    query: Annotated[AdminOrderListQuery, Query()],
) -> AdminOrderPageRead:
    """Every order, newest first, narrowed by status, payment status, refund due, buyer,
    coupon and creation date (`from` inclusive; `to` exclusive, a date meaning its whole day)."""
    page = await admin_service.list_orders(session, query, codec=codec)
    return AdminOrderPageRead(
        items=[AdminOrderRead.from_admin_order(order) for order in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/admin/orders/{order_number}",
    response_model=AdminOrderRead,
    responses=responses(OrderNotFound, *ADMIN_ERRORS),
)
async def admin_get_order(
    session: SessionDep, admin: AdminUser, order_number: str
) -> AdminOrderRead:
    order = await admin_service.get_order(session, order_number)
    return AdminOrderRead.from_admin_order(order)


@router.post(
    "/admin/orders/{order_number}/mark-paid",
    response_model=AdminOrderRead,
    responses=responses(OrderNotFound, OrderAlreadyPaid, InvalidOrderTransition, *ADMIN_ERRORS),
)
async def admin_mark_paid(
    session: SessionDep,
    admin: AdminUser,
    order_number: str,
    body: MarkPaid | None = None,
) -> AdminOrderRead:
    """Record an offline payment (default method `offline`): the order completes, is paid,
    and its buyer is enrolled, exactly as on the gateway's capture."""
    order = await admin_service.mark_paid(session, order_number, body or MarkPaid(), admin=admin)
    return AdminOrderRead.from_admin_order(order)


@router.post(
    "/admin/orders/{order_number}/refund",
    response_model=AdminOrderRead,
    responses=responses(OrderNotFound, OrderNotRefundable, *ADMIN_ERRORS),
)
async def admin_refund_order(
    session: SessionDep, admin: AdminUser, order_number: str, body: RefundRequest
) -> AdminOrderRead:
    """Refund a completed, paid order: status and payment become refunded, the enrollments
    it granted are revoked, and the reason is kept in metadata."""
    order = await admin_service.refund(session, order_number, body, admin=admin)
    return AdminOrderRead.from_admin_order(order)


@router.post(
    "/admin/orders/{order_number}/cancel",
    response_model=AdminOrderRead,
    responses=responses(OrderNotFound, OrderNotCancellable, *ADMIN_ERRORS),
)
async def admin_cancel_order(
    session: SessionDep, admin: AdminUser, order_number: str, body: CancelRequest
) -> AdminOrderRead:
    """Cancel an unpaid pending or processing order: its coupon use stops counting and its
    courses can be bought again; the reason is kept in metadata."""
    order = await admin_service.cancel(session, order_number, body, admin=admin)
    return AdminOrderRead.from_admin_order(order)


@router.post(
    "/admin/orders/{order_number}/mark-late-capture-refunded",
    response_model=AdminOrderRead,
    responses=responses(OrderNotFound, NoRefundDue, *ADMIN_ERRORS),
)
async def admin_mark_late_capture_refunded(
    session: SessionDep, admin: AdminUser, order_number: str, body: LateCaptureRefunded
) -> AdminOrderRead:
    """Record that the named payments, which the gateway captured after this order was
    cancelled or expired (`metadata.lateCaptures`), were refunded at the gateway. The order
    leaves `?refund_due=true` once none is left to refund."""
    order = await admin_service.mark_late_capture_refunded(session, order_number, body, admin=admin)
    return AdminOrderRead.from_admin_order(order)
