from __future__ import annotations

from coursehub.core.errors import Conflict, NotFound, ValidationFailed


class OrderNotFound(NotFound):
    code = "order_not_found"
    title = "Order not found"


class InvalidOrderTransition(Conflict):
    code = "invalid_order_transition"
    title = "The order cannot change to that status"


class CourseUnavailable(ValidationFailed):
    code = "course_unavailable"
    title = "A course is not for sale"


class AlreadyEnrolled(Conflict):
    code = "already_enrolled"
    title = "You are already enrolled in a course of this order"


class CourseInOpenOrder(Conflict):
    code = "course_in_pending_order"
    title = "A course is already in another pending order of yours"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    title = "The Idempotency-Key was used for a different order"


class InvalidIdempotencyKey(ValidationFailed):
    code = "invalid_idempotency_key"
    title = "The Idempotency-Key header is not valid"


class OrderNotPending(Conflict):
    code = "order_not_pending"
    title = "Only a pending order can be cancelled"


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"
    title = "Only an unpaid pending or processing order can be cancelled"


class OrderNumberExhausted(Conflict):
    """Every fresh order number collided: practically impossible; the buyer may retry."""

    code = "order_number_unavailable"
    title = "Could not allocate an order number; try again"


class CheckoutConflict(Conflict):
    """A concurrent change the checkout could not settle by retrying once (practically
    never): as PostgreSQL's own transaction conflicts, the buyer may simply retry."""

    code = "transaction_conflict"
    title = "A concurrent change interrupted the request; try again"
