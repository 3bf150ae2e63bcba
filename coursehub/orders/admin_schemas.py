"""The admins' order shapes: an order with its buyer and metadata, the list's filters,
and the bodies of mark-paid, refund and cancel."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)

from coursehub.core.errors import FieldValueError
from coursehub.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRead
from coursehub.core.timestamps import MAX_YEAR, MIN_YEAR, ApiDate, ApiDateTimeOrNaive
from coursehub.orders.models import Order, OrderStatus, PaymentStatus
from coursehub.orders.schemas import CouponCode, OrderRead, OrdersModel
from coursehub.payments.schemas import PaymentId

OFFLINE_PAYMENT_METHOD = "offline"


class AdminOrderRead(OrderRead):
    user_id: str
    user_email: str
    username: str
    # Any JSON value: the store writes objects, but an order carried over from the Node app
    # may hold an array, a string, a number … (orders/metadata.py). Shown as stored.
    metadata: JsonValue = Field(
        description="What the store recorded: paymentId, paidAt, refund, paymentFailure, "
        "lateCaptures and refundDue, cancelReason … An object, or null; an order carried "
        "over from the Node app may hold any other JSON value, which the store keeps under "
        "`legacy` once it records something on the order."
    )

    @classmethod
    def from_admin_order(cls, order: Order) -> AdminOrderRead:
        """From an order loaded with `admin_repository.ADMIN_ORDER_OPTIONS`."""
        return cls.model_validate(
            {
                **OrderRead.fields_of(order),
                "user_id": order.user_id,
                "user_email": order.user.email,
                "username": order.user.username,
                "metadata": order.metadata_,
            }
        )


AdminOrderPageRead = PageRead[AdminOrderRead]


def start_of(value: date | datetime) -> datetime:
    """A range's lower bound: a date means its first instant (UTC); naive times are UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.min, tzinfo=UTC)


def end_of(value: date | datetime) -> datetime:
    """A range's (exclusive) upper bound: a date means the whole of that day is included."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)


# Bounded years (core/timestamps.py): `end_of` adds a day, the report's default start
# takes 30 days off, and neither may overflow.
_date: TypeAdapter[date] = TypeAdapter(ApiDate)
_datetime: TypeAdapter[datetime] = TypeAdapter(ApiDateTimeOrNaive)


def _date_or_datetime(value: Any) -> Any:
    # Decided by the text's form, not by pydantic's union: `2026-11-25T00:00:00Z` is an
    # instant (an exclusive `to` ends there), `2026-11-25` a whole day.
    if isinstance(value, str):
        text = value.strip()
        return _date.validate_python(text) if len(text) == 10 else _datetime.validate_python(text)
    return value


DateOrTime = Annotated[
    date | datetime,
    BeforeValidator(_date_or_datetime),
    Field(
        description="A date (`2026-11-25`, the whole day, UTC) or an ISO 8601 date-time; "
        f"years {MIN_YEAR} to {MAX_YEAR}."
    ),
]


class DateRangeQuery(BaseModel):
    """`from` (inclusive) and `to` (exclusive for a time; a date includes that whole day)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_: DateOrTime | None = Field(default=None, alias="from")
    to: DateOrTime | None = None

    @model_validator(mode="after")
    def _in_order(self) -> DateRangeQuery:
        starts_at, ends_at = self.starts_at, self.ends_at
        if starts_at is not None and ends_at is not None and starts_at >= ends_at:
            # `to` is the one at fault: the client reads the range from its start.
            raise FieldValueError("to", "`from` must be before `to`")
        return self

    @property
    def starts_at(self) -> datetime | None:
        return start_of(self.from_) if self.from_ is not None else None

    @property
    def ends_at(self) -> datetime | None:
        return end_of(self.to) if self.to is not None else None


class AdminOrderListQuery(DateRangeQuery):
    status: OrderStatus | None = None
    payment_status: PaymentStatus | None = None
    refund_due: bool | None = Field(
        default=None,
        description="true: orders the gateway captured after they were cancelled or expired, "
        "whose money is still to be refunded (`metadata.refundDue`); false: all others.",
    )
    user_id: str | None = Field(default=None, max_length=64)
    coupon_id: str | None = Field(default=None, max_length=64)
    coupon_code: CouponCode | None = Field(default=None, description="Matched case-insensitively.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class MarkPaid(OrdersModel):
    """An offline payment (bank transfer, cash, cheque …), recorded by an admin."""

    payment_method: Annotated[
        str,
        StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z][a-z0-9_]{1,31}$"),
    ] = OFFLINE_PAYMENT_METHOD
    reference: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = (
        Field(default=None, description="The payment's reference (a UTR, a receipt number).")
    )


class LateCaptureRefunded(OrdersModel):
    """Which late captures of an order were refunded at the gateway (by their payment ids:
    another may have arrived since the admin looked)."""

    payment_ids: Annotated[list[PaymentId], Field(min_length=1, max_length=50)] = Field(
        description="The gateway's payment ids of the captures refunded (`lateCaptures`)."
    )
    reference: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = (
        Field(default=None, description="The gateway's refund reference.")
    )

    @field_validator("payment_ids")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each payment id may appear only once")
        return value


Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class RefundRequest(OrdersModel):
    reason: Reason


class CancelRequest(OrdersModel):
    reason: Reason
