"""An order as checkout places it: plain data, made from the rows checkout read and
written by one statement (repository `insert_order`), which `OrderRead` reads as it reads
an ORM `Order`.

Not ORM objects: checkout made eight of them (the order, its items, its courses, its
coupon usage), each with its instrumented attributes and relationships set as loaded, for
a response that only reads them; that was a sixth of a checkout's CPU
(docs/BENCHMARKS.md). Nothing about a placed order is changed through the ORM afterwards:
a later request reads the order afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from coursehub.coupons.repository import CouponOffer
from coursehub.orders.models import OrderStatus, PaymentStatus


class SoldCourse(NamedTuple):
    """A course as an order sells it (its price) and shows it (its listing columns)."""

    id: str
    title: str
    slug: str
    thumbnail: str | None
    price: Decimal


@dataclass(slots=True)
class PlacedItem:
    id: str
    course_id: str
    price: Decimal  # the course's price, half-up to the paisa, when the order was placed
    course: SoldCourse


@dataclass(slots=True)
class PlacedUsage:
    id: str
    coupon_id: str
    discount: Decimal
    coupon: CouponOffer


@dataclass(slots=True)
class PlacedOrder:
    id: str
    order_number: str  # given by the insert, which retries a number already taken
    user_id: str
    status: OrderStatus
    payment_status: PaymentStatus
    payment_method: str | None
    amount: Decimal
    original_amount: Decimal
    currency: str
    metadata_: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    items: list[PlacedItem]
    coupon_usage: PlacedUsage | None
