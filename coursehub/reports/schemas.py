"""The sales report's query and shape."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from coursehub.core.money import CURRENCY, Currency, Money
from coursehub.orders.admin_schemas import DateRangeQuery

DEFAULT_WINDOW_DAYS = 30


class SalesReportQuery(DateRangeQuery):
    """`from` defaults to 30 days before `to`; `to` to now."""

    top: int = Field(default=10, ge=1, le=50, description="How many top courses to list.")
    currency: Currency = Field(
        default=CURRENCY,
        description="The currency reported on (ISO 4217, any case). The store sells in INR; "
        "orders adopted from the Node app may be in another.",
    )


class ReportsModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class OrderCountsRead(ReportsModel):
    total: int
    pending: int
    processing: int
    completed: int
    cancelled: int
    refunded: int


class RefundsRead(ReportsModel):
    count: int
    amount: Money = Field(description="What the refunded orders had been paid.")


class TopCourseRead(ReportsModel):
    course_id: str
    title: str
    slug: str
    units_sold: int = Field(description="Completed orders that included the course.")
    sales: Money = Field(description="The course's prices in those orders, before discounts.")
    revenue: Money = Field(
        description="Its share of what those orders were paid: each order's discount spread "
        "over its items in proportion to their prices."
    )


class SalesReportRead(ReportsModel):
    from_: datetime = Field(alias="from", description="Inclusive.")
    to: datetime = Field(description="Exclusive.")
    currency: str = Field(description="Every count and sum below is of orders in it.")
    orders: OrderCountsRead = Field(description="Orders placed in the window, by status.")
    orders_in_other_currencies: int = Field(
        description="Orders placed in the window in another currency: left out of every "
        "other figure (ask for their currency to see them)."
    )
    gross_sales: Money = Field(description="originalAmount of the completed orders.")
    discounts: Money = Field(description="Coupon discounts on the completed orders.")
    revenue: Money = Field(description="amount of the completed orders: grossSales − discounts.")
    average_order_value: Money = Field(description="revenue / completed orders.")
    refunds: RefundsRead
    top_courses: list[TopCourseRead] = Field(description="By revenue, highest first.")
