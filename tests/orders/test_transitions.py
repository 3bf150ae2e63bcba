"""The order state machine, pair by pair, against the issue's words (written out here, not
read back from ALLOWED_TRANSITIONS): pending → processing → completed; pending or
processing → cancelled; completed → refunded. Anything else is a 409."""

from __future__ import annotations

import itertools

import pytest

from coursehub.orders.errors import InvalidOrderTransition
from coursehub.orders.models import Order, OrderStatus
from coursehub.orders.transitions import (
    ALLOWED_TRANSITIONS,
    can_transition,
    complete_order,
    move_order,
)

P, R, CO, CA, RE = (
    OrderStatus.pending,
    OrderStatus.processing,
    OrderStatus.completed,
    OrderStatus.cancelled,
    OrderStatus.refunded,
)
ALLOWED = {(P, R), (R, CO), (P, CA), (R, CA), (CO, RE)}
EVERY_PAIR = list(itertools.product(OrderStatus, repeat=2))


def an_order(status: OrderStatus) -> Order:
    return Order(order_number="CH-20261125-TEST01", status=status)


def test_the_table_covers_every_status_and_says_what_the_issue_says() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(OrderStatus)
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == ALLOWED


@pytest.mark.parametrize(("current", "target"), EVERY_PAIR, ids=lambda s: s.value)
def test_every_pair_moves_if_allowed_and_raises_otherwise(
    current: OrderStatus, target: OrderStatus
) -> None:
    order = an_order(current)

    if (current, target) in ALLOWED:
        assert can_transition(current, target)
        move_order(order, target)
        assert order.status == target
    else:
        assert not can_transition(current, target)
        with pytest.raises(InvalidOrderTransition) as raised:
            move_order(order, target)
        assert order.status == current  # unchanged
        assert raised.value.status == 409
        assert raised.value.code == "invalid_order_transition"
        assert raised.value.extra == {
            "orderNumber": order.order_number,
            "orderStatus": current.value,
        }


@pytest.mark.parametrize("current", list(OrderStatus), ids=lambda s: s.value)
def test_completing_passes_a_pending_order_through_processing_and_nothing_else(
    current: OrderStatus,
) -> None:
    order = an_order(current)

    if current in (P, R):
        complete_order(order)
        assert order.status == CO
    else:
        with pytest.raises(InvalidOrderTransition):
            complete_order(order)
        assert order.status == current
