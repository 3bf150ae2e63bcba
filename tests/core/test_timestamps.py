"""Every date or date-time the API takes is bounded to sane years (core/timestamps.py): one
at the ends of Python's range is a 422, not the 500 of an overflow in the store's date
arithmetic or in the database binding's conversion to UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.timestamps import (
    MAX_YEAR,
    MIN_YEAR,
    ApiDate,
    ApiDateTime,
    to_stored_precision,
    up_to_stored_precision,
)
from coursehub.models import Coupon, OrderStatus, PaymentStatus
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_order,
    make_user,
)
from tests.payments.helpers import commit_setup

COUPON = {
    "code": "RANGE-10",
    "type": "percentage",
    "value": "10",
    "startDate": "2026-01-01T00:00:00Z",
    "endDate": "2026-12-31T00:00:00Z",
}

# (method, url, query, body, the field named in the error)
OUT_OF_RANGE: list[tuple[str, str, dict[str, str] | None, dict[str, Any] | None, str]] = [
    ("GET", "/api/v1/admin/orders", {"to": "9999-12-31"}, None, "to"),
    ("GET", "/api/v1/admin/orders", {"from": "0001-01-01T00:00:00+01:00"}, None, "from"),
    ("GET", "/api/v1/admin/orders", {"from": "1969-12-31"}, None, "from"),
    ("GET", "/api/v1/admin/reports/sales", {"to": "9999-12-31"}, None, "to"),
    ("GET", "/api/v1/admin/reports/sales", {"to": "0001-01-05"}, None, "to"),
    ("GET", "/api/v1/admin/reports/sales", {"from": "9999-12-31T23:59:59Z"}, None, "from"),
    (
        "POST",
        "/api/v1/admin/coupons",
        None,
        {**COUPON, "startDate": "0001-01-01T00:00:00+05:30"},
        "startDate",
    ),
    (
        "POST",
        "/api/v1/admin/coupons",
        None,
        {**COUPON, "endDate": "9999-12-31T23:59:59-05:00"},
        "endDate",
    ),
    (
        "PATCH",
        "/api/v1/admin/coupons/{coupon}",
        None,
        {"endDate": "9001-01-01T00:00:00Z"},
        "endDate",
    ),
    (
        "PATCH",
        "/api/v1/admin/coupons/{coupon}",
        None,
        {"startDate": "0001-01-01T00:00:00+05:30"},
        "startDate",
    ),
]


# Unix time, as pydantic would otherwise read a number or a string of digits: a date
# written without dashes would silently have meant a day of 1970.
NOT_ISO: list[tuple[str, str, dict[str, str] | None, dict[str, Any] | None, str]] = [
    ("GET", "/api/v1/admin/orders", {"to": "0.5"}, None, "to"),
    ("GET", "/api/v1/admin/orders", {"from": "20261125"}, None, "from"),
    ("GET", "/api/v1/admin/reports/sales", {"to": "1764000000"}, None, "to"),
    ("GET", "/api/v1/admin/reports/sales", {"from": "25/11/2026"}, None, "from"),
    ("POST", "/api/v1/admin/coupons", None, {**COUPON, "startDate": 1767225600}, "startDate"),
    ("POST", "/api/v1/admin/coupons", None, {**COUPON, "endDate": "1798761600"}, "endDate"),
    ("PATCH", "/api/v1/admin/coupons/{coupon}", None, {"endDate": 1798761600.5}, "endDate"),
]


@pytest.mark.parametrize(("method", "url", "query", "body", "field"), OUT_OF_RANGE + NOT_ISO)
async def test_a_date_outside_the_sane_years_or_not_iso_8601_is_a_422(
    client: httpx.AsyncClient,
    session: AsyncSession,
    method: str,
    url: str,
    query: dict[str, str] | None,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    admin = await make_admin(session)
    coupon = await make_coupon(session)
    # Committed (a savepoint release): the failed request's rollback keeps it.
    await commit_setup(session)

    response = await client.request(
        method,
        url.format(coupon=coupon.id),
        params=query,
        json=body,
        headers=auth_headers(admin),
    )

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert any(error["field"].endswith(field) for error in problem["errors"]), problem
    stored = await session.scalar(select(Coupon).where(Coupon.id == coupon.id))
    assert stored is not None and stored.end_date == coupon.end_date  # unchanged
    assert await session.scalar(select(func.count()).select_from(Coupon)) == 1


@pytest.mark.parametrize(
    ("method", "url", "query"),
    [
        ("GET", "/api/v1/admin/orders", {"from": "1970-01-01", "to": "9000-12-31"}),
        ("GET", "/api/v1/admin/reports/sales", {"to": "1970-01-05"}),
        ("GET", "/api/v1/admin/reports/sales", {"to": "9000-12-31T23:59:59+14:00"}),
    ],
)
async def test_the_ends_of_the_sane_years_are_accepted(
    client: httpx.AsyncClient,
    session: AsyncSession,
    method: str,
    url: str,
    query: dict[str, str],
) -> None:
    admin = await make_admin(session)

    response = await client.request(method, url, params=query, headers=auth_headers(admin))

    assert response.status_code == 200, response.text


def test_the_types_take_iso_8601_text_and_python_dates_only() -> None:
    times = TypeAdapter(ApiDateTime)
    assert times.validate_python("2026-11-25T10:00:00+05:30").hour == 10
    assert times.validate_python(datetime(2026, 11, 25, tzinfo=UTC)).day == 25
    assert TypeAdapter(ApiDate).validate_python(date(2026, 11, 25)) == date(2026, 11, 25)
    for bad in (1764000000, 1764000000.0, "1764000000", "0.5", "", "now", b"17640000"):
        with pytest.raises(ValidationError, match="ISO 8601"):
            times.validate_python(bad)


def test_the_types_bound_the_year_both_ways() -> None:
    dates = TypeAdapter(ApiDate)
    times = TypeAdapter(ApiDateTime)
    assert dates.validate_python(f"{MIN_YEAR}-01-01") == date(MIN_YEAR, 1, 1)
    assert times.validate_python(f"{MAX_YEAR}-12-31T23:59:59Z").year == MAX_YEAR
    for bad in (f"{MIN_YEAR - 1}-12-31", f"{MAX_YEAR + 1}-01-01"):
        with pytest.raises(ValidationError):
            dates.validate_python(bad)
    with pytest.raises(ValidationError):
        times.validate_python(datetime(MAX_YEAR + 1, 1, 1).isoformat() + "Z")


# --- milliseconds: the precision the store keeps ------------------------------------------


def test_times_are_brought_to_the_stored_milliseconds() -> None:
    fine = datetime(2030, 1, 1, 10, 0, 0, 400, tzinfo=UTC)
    whole = datetime(2030, 1, 1, 10, 0, 0, 1000, tzinfo=UTC)

    assert to_stored_precision(fine) == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert up_to_stored_precision(fine) == whole
    assert up_to_stored_precision(whole) == whole == to_stored_precision(whole)


async def test_a_coupon_window_is_checked_and_answered_as_stored(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Both ends within one millisecond: stored, they would be equal (an empty window the
    201 did not show)."""
    admin = await make_admin(session)
    await commit_setup(session)
    headers = auth_headers(admin)
    empty = {
        **COUPON,
        "startDate": "2030-01-01T10:00:00.0001Z",
        "endDate": "2030-01-01T10:00:00.0009Z",
    }
    fine = {**COUPON, "startDate": "2030-01-01T10:00:00.0005Z", "endDate": "2030-02-01T00:00Z"}

    refused = await client.post("/api/v1/admin/coupons", json=empty, headers=headers)
    created = await client.post("/api/v1/admin/coupons", json=fine, headers=headers)
    stored = await client.get(f"/api/v1/admin/coupons/{created.json()['id']}", headers=headers)

    assert refused.status_code == 422, refused.text
    assert created.status_code == 201, created.text
    assert created.json()["startDate"] == stored.json()["startDate"]
    assert datetime.fromisoformat(stored.json()["startDate"]) == datetime(
        2030, 1, 1, 10, tzinfo=UTC
    )


async def test_a_range_bound_finer_than_a_millisecond_selects_exactly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """An order placed at 10:00:00.000 is before `to=10:00:00.0008` (in the window) and
    before `from=10:00:00.0004` (out of it); the binding's truncation had it the other way
    round."""
    admin = await make_admin(session)
    placed = datetime(2030, 1, 1, 10, tzinfo=UTC)
    order = await make_order(
        session,
        user=await make_user(session),
        courses=[await make_course(session, price="100.00")],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
        created_at=placed,
    )
    await commit_setup(session)
    headers, number = auth_headers(admin), order.order_number
    windows = {
        ("2030-01-01T09:00:00Z", "2030-01-01T10:00:00.0008Z"): True,
        ("2030-01-01T10:00:00.0004Z", "2030-01-01T11:00:00Z"): False,
    }

    for (start, end), included in windows.items():
        window = {"from": start, "to": end}
        listed = await client.get("/api/v1/admin/orders", params=window, headers=headers)
        report = await client.get("/api/v1/admin/reports/sales", params=window, headers=headers)
        assert listed.status_code == report.status_code == 200, (listed.text, report.text)
        numbers = [item["orderNumber"] for item in listed.json()["items"]]
        assert (numbers == [number]) is included, window
        assert report.json()["orders"]["completed"] == (1 if included else 0), window
