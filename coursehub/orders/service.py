"""The buyer's orders: reading them, cancelling a pending one, and expiring stale ones.

Checkout itself lives in `checkout.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.models import utcnow
from coursehub.core.pagination import CursorCodec, Page, decode_time_keyset, time_keyset_page
from coursehub.orders import repository
from coursehub.orders.errors import OrderNotFound, OrderNotPending
from coursehub.orders.metadata import metadata_object
from coursehub.orders.models import Order, OrderStatus
from coursehub.orders.schemas import OrderListQuery
from coursehub.orders.transitions import move_order
from coursehub.users.models import User

LIST_CONTEXT = "orders:mine:newest"
# Expiry cancels in batches, each its own short transaction, so a backlog never holds
# thousands of row locks at once.
EXPIRY_BATCH = 500


def _not_found(order_number: str) -> OrderNotFound:
    # The same answer for someone else's order as for none: numbers are not to be probed.
    return OrderNotFound(f"you have no order {order_number}")


async def get_order(session: AsyncSession, *, user: User, order_number: str) -> Order:
    order = await repository.get_user_order(session, user_id=user.id, order_number=order_number)
    if order is None:
        raise _not_found(order_number)
    return order


async def list_orders(
    session: AsyncSession, *, user: User, query: OrderListQuery, codec: CursorCodec
) -> Page[Order]:
    """The user's orders, newest first; three queries per page."""
    context = f"{LIST_CONTEXT}:{user.id}"
    after = decode_time_keyset(codec, context, query.cursor) if query.cursor else None
    rows = await repository.list_user_orders(
        session, user_id=user.id, after=after, limit=query.limit + 1
    )
    return time_keyset_page(
        rows,
        limit=query.limit,
        keyset=lambda order: (order.created_at, order.id),
        codec=codec,
        context=context,
    )


async def cancel_order(session: AsyncSession, *, user: User, order_number: str) -> Order:
    """Cancel the user's own pending order, which gives back its coupon use: a cancelled
    order's usage (kept as its history) no longer counts.

    The row is locked first, so a payment captured at the same moment either lands
    before (the order is then not pending: 409) or after (it then sees a cancelled order).
    """
    order = await repository.lock_user_order(session, user_id=user.id, order_number=order_number)
    if order is None:
        raise _not_found(order_number)
    if order.status != OrderStatus.pending:
        raise OrderNotPending(
            f"order {order.order_number} is {order.status.value}; only a pending order can be "
            "cancelled",
            extra={"orderNumber": order.order_number, "orderStatus": order.status.value},
        )
    move_order(order, OrderStatus.cancelled)
    order.metadata_ = {**metadata_object(order.metadata_), "cancelReason": "cancelled_by_buyer"}
    order.updated_at = utcnow()
    await session.flush()
    return order


async def expire_stale_order_batch(
    session: AsyncSession, *, ttl: timedelta, now: datetime, limit: int = EXPIRY_BATCH
) -> list[str]:
    """Cancel up to `limit` pending orders created more than `ttl` before `now` (which gives
    back their coupon uses, as any cancellation does). The numbers of the orders expired.

    One batch: the caller commits it and asks again while a full batch came back
    (`orders.expiry.expire_stale_orders`), so no transaction holds more than `limit`
    order locks nor keeps a backlog's worth of work uncommitted. Keep `now` fixed
    across a run's batches: orders placed meanwhile are not the run's to expire.
    """
    return await repository.expire_pending_orders(
        session, created_before=now - ttl, now=now, limit=limit
    )
