"""Payments: the gateway's word, taken through a signed webhook, and what it does to orders.

Every event is applied with the order row locked (`repository.lock_order`), so
replays, duplicates delivered at once and events arriving out of order are
harmless:

- `payment.captured` on a pending or processing order completes it (through the
  state machine), marks it paid, keeps the paymentId in metadata and enrolls the
  buyer (reactivating a revoked enrollment). On an order already paid (or paid and
  refunded since) it changes nothing, unless its paymentId is another one: the
  customer paid twice, and that second payment is recorded for a refund as a late
  capture is (below). An order an admin marked paid has no paymentId, only the
  reference the admin gave, if any: a capture with that reference as its paymentId is
  the same payment, any other is recorded for a refund too. Only an order paid under
  the Node app, with neither, has nothing to tell a second payment by: a capture of it
  changes nothing.
- `payment.failed` on a pending or processing order cancels it and marks the payment
  failed; being cancelled, its coupon use no longer counts (the usage row stays).
  After a capture it is ignored and logged: a gateway may report an earlier failed
  attempt after the successful one. On an order already cancelled it changes nothing.
- `payment.captured` on an order that was cancelled meanwhile (the customer
  cancelled, it expired, or an earlier attempt failed) is a *late capture*: the
  customer's money was taken, but the order is not completed. Completing it would
  go against the state machine, and more importantly the customer has most often
  ordered again and paid for that order too, its coupon use may have gone to
  someone else, and prices may have changed. So the capture is recorded in the
  order's metadata (`lateCaptures`, `refundDue: true`) and logged as a warning for
  an operator to refund at the gateway; the order stays cancelled.

The amount (compared at the paisa) and the currency must equal the order's, else
the event is refused (422) and nothing changes: the gateway would be reporting a
payment for something other than this order.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.errors import describe, field_errors
from coursehub.core.models import utcnow
from coursehub.core.money import to_paise
from coursehub.enrollments.service import grant_enrollments_for_order
from coursehub.orders.errors import OrderNotFound
from coursehub.orders.metadata import (
    LATE_CAPTURES_KEY,
    capture_payment_id,
    late_captures,
    metadata_object,
)
from coursehub.orders.models import Order, OrderStatus, PaymentStatus
from coursehub.orders.transitions import complete_order, move_order
from coursehub.payments import repository
from coursehub.payments.errors import (
    InvalidPaymentEvent,
    InvalidSignature,
    PaymentAmountMismatch,
    PaymentCurrencyMismatch,
)
from coursehub.payments.schemas import PaymentEvent, PaymentEventType, WebhookOutcome
from coursehub.payments.signature import is_valid_signature, sign

logger = logging.getLogger("coursehub.payments")

# What a gateway capture records as the method when checkout did not name one.
ONLINE_PAYMENT_METHOD = "online"
# `metadata.via` of an order completed by an admin's mark-paid (orders/admin_service.py),
# which records the payment's `paymentReference`, if given, but no paymentId.
MARKED_PAID_VIA = "admin"


@dataclass(frozen=True)
class WebhookResult:
    outcome: WebhookOutcome
    order: Order


# --- the webhook ------------------------------------------------------------------------


def parse_event(body: bytes) -> PaymentEvent:
    """The event in a (verified) body. Numbers are read as Decimal, never float."""
    try:
        raw = json.loads(body, parse_float=Decimal)
    except (ValueError, InvalidOperation):
        raise InvalidPaymentEvent("the body is not JSON") from None
    except RecursionError:
        # Arrays or objects nested past the interpreter's recursion limit: a signed body
        # still, so answered as a malformed event, not a 500.
        raise InvalidPaymentEvent("the body is not JSON: it is nested too deeply") from None
    try:
        return PaymentEvent.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc.errors())
        raise InvalidPaymentEvent(describe(errors), errors=errors) from None


async def handle_webhook(
    session: AsyncSession, *, body: bytes, signature: str | None, secret: str
) -> WebhookResult:
    """Verify, parse and apply one delivery of the gateway's webhook."""
    if not is_valid_signature(body, signature, secret):
        logger.warning("payment webhook refused: missing or wrong signature")
        raise InvalidSignature("the X-CourseHub-Signature header is missing or does not match")
    return await apply_event(session, parse_event(body))


async def apply_event(session: AsyncSession, event: PaymentEvent) -> WebhookResult:
    order = await repository.lock_order(session, event.order_number)
    if order is None:
        raise OrderNotFound(f"no order {event.order_number!r}")
    _check_amount_and_currency(order, event)
    if event.event is PaymentEventType.captured:
        outcome = await _apply_capture(session, order, event)
    else:
        outcome = await _apply_failure(session, order, event)
    return WebhookResult(outcome=outcome, order=order)


def _check_amount_and_currency(order: Order, event: PaymentEvent) -> None:
    extra = {"orderNumber": order.order_number}
    if event.currency != order.currency.upper():
        logger.warning(
            "payment %s for order %s refused: currency %s, the order's is %s",
            event.payment_id,
            order.order_number,
            event.currency,
            order.currency,
        )
        raise PaymentCurrencyMismatch(
            f"the payment is in {event.currency}; order {order.order_number} is in "
            f"{order.currency}",
            extra=extra,
        )
    expected = to_paise(order.amount)
    # Exact: a sub-paisa amount (1499.004) is not the order's 1499.00.
    if event.amount != expected:
        logger.warning(
            "payment %s for order %s refused: amount %s, the order's is %s",
            event.payment_id,
            order.order_number,
            event.amount,
            expected,
        )
        raise PaymentAmountMismatch(
            f"the payment is for {event.amount}; order {order.order_number} is for {expected}",
            extra={**extra, "expectedAmount": str(expected)},
        )


async def _apply_capture(
    session: AsyncSession, order: Order, event: PaymentEvent
) -> WebhookOutcome:
    if order.payment_status in (PaymentStatus.paid, PaymentStatus.refunded):
        metadata = metadata_object(order.metadata_)
        if metadata.get("via") == MARKED_PAID_VIA:
            return _apply_capture_after_mark_paid(order, event, metadata)
        known = metadata.get("paymentId")
        # No paymentId only on an order paid under the Node app, which recorded none: nothing
        # to tell a second payment by, so it is taken as a replay.
        if known is None or known == event.payment_id:
            return WebhookOutcome.already_captured
        # The customer paid twice. The order keeps its first payment; the second is owed
        # back, and is recorded where an operator finds money to refund (refundDue), not
        # only in the log.
        _record_capture_to_refund(order, event)
        logger.warning(
            "second capture %s for order %s, already paid by %s: recorded, refund it at "
            "the gateway",
            event.payment_id,
            order.order_number,
            known,
        )
        return WebhookOutcome.second_capture_flagged
    if order.status in (OrderStatus.pending, OrderStatus.processing):
        await record_payment(
            session, order, payment_id=event.payment_id, method=None, details={"via": "gateway"}
        )
        logger.info("order %s paid by %s", order.order_number, event.payment_id)
        return WebhookOutcome.captured
    _record_capture_to_refund(order, event)
    logger.warning(
        "late capture %s for order %s, which is %s: recorded, refund it at the gateway",
        event.payment_id,
        order.order_number,
        order.status.value,
    )
    return WebhookOutcome.late_capture_flagged


def _apply_capture_after_mark_paid(
    order: Order, event: PaymentEvent, metadata: dict[str, Any]
) -> WebhookOutcome:
    """A capture of an order an admin marked paid (an offline payment, recorded with no
    paymentId). Only a capture whose paymentId is the mark-paid's `paymentReference` is that
    same payment; any other may be the customer paying a second time, so it is recorded
    for a refund, for an operator to review, rather than taken for a replay and lost."""
    reference = metadata.get("paymentReference")
    if reference is not None and reference == event.payment_id:
        return WebhookOutcome.already_captured
    _record_capture_to_refund(order, event)
    logger.warning(
        "capture %s for order %s, already marked paid by admin %s (reference %s): recorded, "
        "refund it at the gateway unless it is that payment",
        event.payment_id,
        order.order_number,
        metadata.get("markedPaidBy"),
        "none" if reference is None else repr(reference),
    )
    return WebhookOutcome.second_capture_flagged


def _record_capture_to_refund(order: Order, event: PaymentEvent) -> None:
    """Add the capture to the order's `lateCaptures` and set `refundDue` (a replay of
    one already there adds nothing)."""
    metadata = metadata_object(order.metadata_)
    late = late_captures(metadata)
    if all(capture_payment_id(entry) != event.payment_id for entry in late):
        late.append(
            {
                "paymentId": event.payment_id,
                "amount": str(event.amount),
                "currency": event.currency,
                "receivedAt": utcnow().isoformat(),
            }
        )
        metadata[LATE_CAPTURES_KEY] = late
        metadata["refundDue"] = True
        order.metadata_ = metadata


async def _apply_failure(
    session: AsyncSession, order: Order, event: PaymentEvent
) -> WebhookOutcome:
    if order.payment_status in (PaymentStatus.paid, PaymentStatus.refunded):
        logger.warning(
            "payment failure %s for order %s ignored: the order is already paid",
            event.payment_id,
            order.order_number,
        )
        return WebhookOutcome.ignored_after_capture
    if order.status not in (OrderStatus.pending, OrderStatus.processing):
        return WebhookOutcome.already_closed
    move_order(order, OrderStatus.cancelled)
    order.payment_status = PaymentStatus.failed
    failure: dict[str, Any] = {"paymentId": event.payment_id, "failedAt": utcnow().isoformat()}
    if event.reason:
        failure["reason"] = event.reason
    order.metadata_ = {**metadata_object(order.metadata_), "paymentFailure": failure}
    await session.flush()
    logger.info("order %s cancelled: payment %s failed", order.order_number, event.payment_id)
    return WebhookOutcome.failed


# --- shared with the admins' mark-paid -------------------------------------------------


async def record_payment(
    session: AsyncSession,
    order: Order,
    *,
    payment_id: str | None,
    method: str | None,
    details: dict[str, Any],
) -> None:
    """Complete a locked, unpaid order as paid and enroll its buyer.

    The one place a payment takes effect: the gateway's capture and an admin's
    mark-paid both come here. Raises InvalidOrderTransition (409) for an order that
    cannot complete (cancelled, refunded).
    """
    complete_order(order)
    order.payment_status = PaymentStatus.paid
    if method is not None:
        order.payment_method = method
    elif order.payment_method is None:
        order.payment_method = ONLINE_PAYMENT_METHOD
    metadata = {**metadata_object(order.metadata_), **details, "paidAt": utcnow().isoformat()}
    if payment_id is not None:
        metadata["paymentId"] = payment_id
    order.metadata_ = metadata
    await session.flush()
    course_ids = await repository.order_course_ids(session, order.id)
    await grant_enrollments_for_order(
        session, user_id=order.user_id, order_id=order.id, course_ids=course_ids
    )


# --- the simulator ---------------------------------------------------------------------


def simulated_event_body(
    order: Order,
    *,
    event: PaymentEventType,
    payment_id: str,
    amount: Decimal | None = None,
) -> bytes:
    """The body the gateway would send for this order, byte for byte as it is signed."""
    payload = {
        "event": event.value,
        "orderNumber": order.order_number,
        "paymentId": payment_id,
        # Another amount exactly as given, unrounded: 499.004 on a 499.00 order is a
        # mismatch to show refused, as the gateway's would be.
        "amount": str(to_paise(order.amount) if amount is None else amount),
        "currency": order.currency,
    }
    if event is PaymentEventType.failed:
        payload["reason"] = "simulated failure"
    return json.dumps(payload, separators=(",", ":")).encode()


def simulated_payment_id() -> str:
    return "pay_sim_" + secrets.token_hex(8)


async def simulate(
    session: AsyncSession,
    *,
    order_number: str,
    event: PaymentEventType,
    secret: str,
    amount: Decimal | None = None,
    owner_id: str | None = None,
) -> WebhookResult:
    """Sign and deliver one gateway event for an order, through the real webhook path.

    `owner_id`: only that user's order may be simulated (a customer demoing their
    own checkout); None for an admin or the CLI.
    """
    body = await simulated_body_for(
        session, order_number=order_number, event=event, amount=amount, owner_id=owner_id
    )
    return await handle_webhook(session, body=body, signature=sign(body, secret), secret=secret)


async def simulated_body_for(
    session: AsyncSession,
    *,
    order_number: str,
    event: PaymentEventType,
    amount: Decimal | None = None,
    owner_id: str | None = None,
) -> bytes:
    """The gateway's body for one event of this order, with a new payment id (`simulate`,
    and the CLI's `payments simulate --url`, which posts it to a running store).
    `owner_id`: only that user's order (an unknown order and another's look the same)."""
    order = await repository.get_order(session, order_number)
    if order is None or (owner_id is not None and order.user_id != owner_id):
        raise OrderNotFound(f"no order {order_number!r}")
    return simulated_event_body(
        order, event=event, payment_id=simulated_payment_id(), amount=amount
    )
