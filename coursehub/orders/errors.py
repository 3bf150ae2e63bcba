from __future__ import annotations

from coursehub.core.errors import Conflict, NotFound


class OrderNotFound(NotFound):
    code = "order_not_found"
    title = "Order not found"


class InvalidOrderTransition(Conflict):
    code = "invalid_order_transition"
    title = "The order cannot change to that status"
