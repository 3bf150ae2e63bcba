"""Orders' API shapes: checkout's body, and an order as its buyer (and an admin) sees it.

`OrderRead.from_order` reads an `Order` loaded with `repository.ORDER_READ_OPTIONS`
(items with their courses, the coupon usage with its coupon); admin shapes extend it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from coursehub.core.money import Money, to_paise
from coursehub.core.pagination import PageQuery, PageRead
from coursehub.core.schemas import ApiModel
from coursehub.orders.models import Order, OrderItem, OrderStatus, PaymentStatus
from coursehub.orders.placed import PlacedItem, PlacedOrder

MAX_ITEMS = 20
# The payment method a zero-amount order records; buyers cannot pick it themselves.
FREE_PAYMENT_METHOD = "free"

CourseId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CouponCode = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, to_upper=True)
]
PaymentMethod = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z][A-Za-z0-9_]{1,31}$"
    ),
    Field(description="How the buyer means to pay, e.g. `upi`, `card`, `netbanking`."),
]


class OrdersModel(ApiModel):
    """The orders' API shapes."""


def distinct_course_ids(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("each course may appear only once")
    return value


class OrderCreate(OrdersModel):
    course_ids: Annotated[list[CourseId], Field(min_length=1, max_length=MAX_ITEMS)]
    coupon_code: CouponCode | None = None
    payment_method: PaymentMethod | None = None

    _distinct = field_validator("course_ids")(distinct_course_ids)

    @field_validator("payment_method")
    @classmethod
    def _not_free(cls, value: str | None) -> str | None:
        if value == FREE_PAYMENT_METHOD:
            raise ValueError("`free` is set by the store on orders that cost nothing")
        return value


class OrderCourseRead(OrdersModel):
    id: str
    title: str
    slug: str
    thumbnail: str | None


class OrderItemRead(OrdersModel):
    course_id: str
    price: Money = Field(description="The course's price when the order was placed.")
    course: OrderCourseRead


class OrderCouponRead(OrdersModel):
    code: str
    discount: Money


class OrderRead(OrdersModel):
    id: str
    order_number: str
    status: OrderStatus
    payment_status: PaymentStatus
    payment_method: str | None
    currency: str
    original_amount: Money = Field(description="The sum of the items' prices.")
    discount: Money = Field(description="originalAmount − amount.")
    amount: Money = Field(description="What the buyer pays.")
    coupon: OrderCouponRead | None = Field(
        description="The coupon applied (a cancelled order keeps it; its use no longer counts)."
    )
    items: list[OrderItemRead]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def fields_of(cls, order: Order | PlacedOrder) -> dict[str, Any]:
        """The shape's fields, from an order loaded with `ORDER_READ_OPTIONS` (subclasses add
        theirs: `AdminOrderRead.model_validate({**OrderRead.fields_of(o), "userId": ...})`),
        or as checkout placed it."""
        items: Sequence[OrderItem | PlacedItem] = order.items
        return {
            "id": order.id,
            "order_number": order.order_number,
            "status": order.status,
            "payment_status": order.payment_status,
            "payment_method": order.payment_method,
            "currency": order.currency,
            "original_amount": order.original_amount,
            # Of the amounts as shown (each half-up to the paisa), so that the three shown
            # add up even for a Node-era order holding sub-paisa amounts.
            "discount": to_paise(order.original_amount) - to_paise(order.amount),
            "amount": order.amount,
            "coupon": _coupon_of(order),
            "items": [
                {"course_id": item.course_id, "price": item.price, "course": item.course}
                # Items have no order of their own (one insert, one createdAt): by title, so
                # every response lists them alike.
                for item in sorted(items, key=lambda i: (i.course.title, i.course_id))
            ],
            "created_at": order.created_at,
            "updated_at": order.updated_at,
        }

    @classmethod
    def from_order(cls, order: Order | PlacedOrder) -> OrderRead:
        return cls.model_validate(cls.fields_of(order))


def _coupon_of(order: Order | PlacedOrder) -> dict[str, Any] | None:
    # Every order that had a coupon keeps its usage row, a cancelled one too.
    usage = order.coupon_usage
    return None if usage is None else {"code": usage.coupon.code, "discount": usage.discount}


OrderPageRead = PageRead[OrderRead]


OrderListQuery = PageQuery
