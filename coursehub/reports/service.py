"""The sales report: what was ordered, earned, discounted and refunded in a window.

Orders belong to the window they were placed in (`createdAt`), whatever happened to
them since: an order placed in March and refunded in April counts as a March
refund. Money is summed exactly in the database and rounded half-up to the paisa
once, here. One currency per report (INR unless asked): orders in another one, adopted
from the Node app, are counted apart and left out of every figure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.errors import FieldError
from coursehub.core.models import utcnow
from coursehub.core.money import ZERO, to_paise
from coursehub.orders.models import OrderStatus
from coursehub.reports import repository
from coursehub.reports.errors import InvalidReportWindow
from coursehub.reports.schemas import DEFAULT_WINDOW_DAYS, SalesReportQuery, SalesReportRead


def window(query: SalesReportQuery) -> tuple[datetime, datetime]:
    ends_at = query.ends_at or utcnow()
    starts_at = query.starts_at or ends_at - timedelta(days=DEFAULT_WINDOW_DAYS)
    return starts_at, ends_at


async def sales_report(session: AsyncSession, query: SalesReportQuery) -> SalesReportRead:
    starts_at, ends_at = window(query)
    if starts_at >= ends_at:
        # Only reachable with `from` alone, in the future (both given are checked on input).
        raise InvalidReportWindow(
            "`from` must be before `to` (which defaults to now)",
            errors=[FieldError(field="from", message="must be before `to`")],
        )
    by_status = {
        row.status: row
        for row in await repository.totals_by_status(
            session, starts_at=starts_at, ends_at=ends_at, currency=query.currency
        )
    }
    courses = await repository.top_courses(
        session, starts_at=starts_at, ends_at=ends_at, currency=query.currency, limit=query.top
    )

    counts = {status.value: 0 for status in OrderStatus}
    for status, row in by_status.items():
        counts[status.value] = row.orders
    completed = by_status.get(OrderStatus.completed)
    refunded = by_status.get(OrderStatus.refunded)
    revenue = to_paise(completed.amount) if completed else ZERO
    completed_count = completed.orders if completed else 0
    return SalesReportRead.model_validate(
        {
            "from": starts_at,
            "to": ends_at,
            "currency": query.currency,
            "orders": {"total": sum(counts.values()), **counts},
            "orders_in_other_currencies": sum(
                row.other_currency_orders for row in by_status.values()
            ),
            "gross_sales": to_paise(completed.original_amount) if completed else ZERO,
            "discounts": to_paise(completed.discount) if completed else ZERO,
            "revenue": revenue,
            # From the exact sum, rounded once: the rounded revenue over the count would
            # round a Node-era sub-paisa total twice.
            "average_order_value": (
                to_paise(completed.amount / completed_count)
                if completed and completed_count
                else ZERO
            ),
            "refunds": {
                "count": refunded.orders if refunded else 0,
                "amount": to_paise(refunded.amount) if refunded else ZERO,
            },
            "top_courses": [
                {
                    "course_id": course.course_id,
                    "title": course.title,
                    "slug": course.slug,
                    "units_sold": course.units,
                    "sales": to_paise(course.sales),
                    "revenue": to_paise(course.revenue),
                }
                for course in courses
            ],
        }
    )
