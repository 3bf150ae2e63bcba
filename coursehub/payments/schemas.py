"""The payment gateway's events as the webhook receives them, and what it answers."""

from __future__ import annotations

import enum
import json
import re
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from coursehub.core.money import Currency
from coursehub.orders.models import OrderStatus, PaymentStatus

OrderNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
PaymentId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
REASON_MAX_LENGTH = 500


# UTF-16 surrogates, which a str holds only unpaired (JSON "\ud800": text a gateway cut
# mid-emoji). PostgreSQL refuses them, and NUL, in JSONB.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):  # how the body's numbers are read
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except RecursionError:
        return "(a reason nested too deeply to show)"


def _reason_text(reason: object) -> str | None:
    """The gateway's reason as text that can be stored: a number or an object as its JSON
    text, NULs removed, lone surrogates replaced by U+FFFD, its first REASON_MAX_LENGTH
    characters. Never refused, so that the failure is applied whatever the wording."""
    if reason is None:
        return None
    text = _SURROGATE.sub("\ufffd", _as_text(reason).replace("\x00", ""))
    return text[:REASON_MAX_LENGTH]


class PaymentEventType(enum.StrEnum):
    captured = "payment.captured"
    failed = "payment.failed"


class WebhookOutcome(enum.StrEnum):
    """What a delivered event did. Every outcome is a 200: the gateway stops retrying."""

    captured = "captured"  # the order completed now
    already_captured = "already_captured"  # a replay or duplicate capture: nothing changed
    failed = "failed"  # the order was cancelled now
    already_closed = "already_closed"  # a failure for an order already cancelled: nothing changed
    ignored_after_capture = "ignored_after_capture"  # a failure after the capture: logged only
    late_capture_flagged = "late_capture_flagged"  # paid after cancellation: kept for refund
    # Paid again, by another payment, after the order was paid: kept for refund.
    second_capture_flagged = "second_capture_flagged"


class PaymentsModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PaymentEvent(PaymentsModel):
    """`POST /webhooks/payments`' body. Fields the store does not know are ignored, as
    gateways add fields over time."""

    model_config = ConfigDict(extra="ignore")

    event: PaymentEventType
    order_number: OrderNumber
    payment_id: PaymentId
    amount: Annotated[Decimal, Field(ge=0, description='Rupees, e.g. 1499.00 or "1499.00".')]
    currency: Currency
    # Cleaned and cut to its first 500 characters, never refused: a failure must be applied
    # whatever the gateway's wording (refused, the order would stay pending until it expired).
    reason: Annotated[str | None, BeforeValidator(_reason_text)] = Field(
        default=None,
        description="Why a payment failed, as the gateway words it (its first "
        f"{REASON_MAX_LENGTH} characters are kept, without NULs, a lone UTF-16 surrogate "
        "as U+FFFD; a number or an object as its JSON text).",
    )


class WebhookResultRead(PaymentsModel):
    received: bool = True
    outcome: WebhookOutcome
    order_number: str
    status: OrderStatus
    payment_status: PaymentStatus


class SimulatePayment(PaymentsModel):
    """Ask the simulator to deliver one gateway event for an order (development only)."""

    model_config = ConfigDict(extra="forbid")

    order_number: OrderNumber
    event: PaymentEventType = PaymentEventType.captured
    amount: Annotated[Decimal | None, Field(ge=0, allow_inf_nan=False, max_digits=30)] = Field(
        default=None, description="Defaults to the order's amount; another one is refused."
    )
