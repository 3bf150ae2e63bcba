"""The order state machine.

pending → processing → completed; pending or processing → cancelled;
completed → refunded. Anything else is a 409.
"""

from __future__ import annotations

from coursehub.orders.errors import InvalidOrderTransition
from coursehub.orders.models import Order, OrderStatus, PaymentStatus

ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.pending: frozenset({OrderStatus.processing, OrderStatus.cancelled}),
    OrderStatus.processing: frozenset({OrderStatus.completed, OrderStatus.cancelled}),
    OrderStatus.completed: frozenset({OrderStatus.refunded}),
    OrderStatus.cancelled: frozenset(),
    OrderStatus.refunded: frozenset(),
}

# What an admin's cancel, or an account's removal, can cancel: an order not yet paid, in
# a state a payment could still complete.
CANCELLABLE = (OrderStatus.pending, OrderStatus.processing)
UNPAID = (PaymentStatus.pending, PaymentStatus.failed)


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def move_order(order: Order, target: OrderStatus) -> None:
    """Set the order's status, or raise InvalidOrderTransition (409)."""
    if not can_transition(order.status, target):
        raise InvalidOrderTransition(
            f"order {order.order_number} is {order.status.value}; it cannot become {target.value}",
            extra={"orderNumber": order.order_number, "orderStatus": order.status.value},
        )
    order.status = target


def complete_order(order: Order) -> None:
    """Complete a paid order: a pending one passes through processing on the way."""
    if order.status == OrderStatus.pending:
        move_order(order, OrderStatus.processing)
    move_order(order, OrderStatus.completed)
