"""GET /admin/reports/sales: counts, money and top courses checked against hand-computed
Decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.models import CouponType, OrderStatus, PaymentStatus, User
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_order,
    make_user,
)
from tests.payments.helpers import commit_setup

URL = "/api/v1/admin/reports/sales"
DAY = datetime(2026, 4, 10, tzinfo=UTC)


@pytest.fixture
async def admin(session: AsyncSession) -> User:
    user = await make_admin(session)
    await commit_setup(session)
    return user


@pytest.fixture
async def april_10(session: AsyncSession) -> dict[str, str]:
    """Six orders on 2026-04-10 and two just outside it. Returns the courses' ids."""
    buyer = await make_user(session)
    a = await make_course(session, title="A", slug="course-a", price="1000.00")
    b = await make_course(session, title="B", slug="course-b", price="333.33")
    c = await make_course(session, title="C", slug="course-c", price="499.99")
    ten_percent = await make_coupon(session, type=CouponType.percentage, value="10")
    flat = await make_coupon(session, type=CouponType.fixed, value="250")
    completed: dict[str, Any] = {
        "status": OrderStatus.completed,
        "payment_status": PaymentStatus.paid,
    }

    # 1: A + B = 1333.33, 10% off = 133.33 (133.333 rounded), pays 1200.00
    await make_order(
        session,
        user=buyer,
        courses=[a, b],
        coupon=ten_percent,
        discount="133.33",
        created_at=DAY + timedelta(hours=1),
        **completed,
    )
    # 2: C, no coupon: pays 499.99
    await make_order(
        session, user=buyer, courses=[c], created_at=DAY + timedelta(hours=2), **completed
    )
    # 3: A with 250 off: pays 750.00
    await make_order(
        session,
        user=buyer,
        courses=[a],
        coupon=flat,
        discount="250.00",
        created_at=DAY + timedelta(hours=3),
        **completed,
    )
    # 4: B, refunded: 333.33
    await make_order(
        session,
        user=buyer,
        courses=[b],
        status=OrderStatus.refunded,
        payment_status=PaymentStatus.refunded,
        created_at=DAY + timedelta(hours=4),
    )
    # 5: C, cancelled; 6: A, pending
    await make_order(
        session,
        user=buyer,
        courses=[c],
        status=OrderStatus.cancelled,
        payment_status=PaymentStatus.failed,
        created_at=DAY + timedelta(hours=5),
    )
    await make_order(session, user=buyer, courses=[a], created_at=DAY + timedelta(hours=6))
    # Just outside the day, on either side: completed, and must not count.
    for moment in (DAY - timedelta(milliseconds=1), DAY + timedelta(days=1)):
        await make_order(session, user=buyer, courses=[a, b, c], created_at=moment, **completed)
    await commit_setup(session)
    return {"a": a.id, "b": b.id, "c": c.id}


async def test_the_report_for_one_day(
    client: httpx.AsyncClient, admin: User, april_10: dict[str, str]
) -> None:
    response = await client.get(
        URL, params={"from": "2026-04-10", "to": "2026-04-10"}, headers=auth_headers(admin)
    )

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["from"].startswith("2026-04-10T00:00:00")
    assert report["to"].startswith("2026-04-11T00:00:00")
    assert report["currency"] == "INR"
    assert report["ordersInOtherCurrencies"] == 0
    assert report["orders"] == {
        "total": 6,
        "pending": 1,
        "processing": 0,
        "completed": 3,
        "cancelled": 1,
        "refunded": 1,
    }
    # 1333.33 + 499.99 + 1000.00; 133.33 + 250.00; 1200.00 + 499.99 + 750.00
    assert Decimal(report["grossSales"]) == Decimal("2833.32")
    assert Decimal(report["discounts"]) == Decimal("383.33")
    assert Decimal(report["revenue"]) == Decimal("2449.99")
    assert report["revenue"] == "2449.99"  # money is a two-decimal string
    # 2449.99 / 3 = 816.6633…
    assert report["averageOrderValue"] == "816.66"
    assert report["refunds"] == {"count": 1, "amount": "333.33"}
    # A: 1000 × 1200/1333.33 (900.0023) + 750 = 1650.00 from 2000.00 of sales;
    # B: 333.33 × 1200/1333.33 = 299.9977… → 300.00; C: 499.99.
    assert report["topCourses"] == [
        {
            "courseId": april_10["a"],
            "title": "A",
            "slug": "course-a",
            "unitsSold": 2,
            "sales": "2000.00",
            "revenue": "1650.00",
        },
        {
            "courseId": april_10["c"],
            "title": "C",
            "slug": "course-c",
            "unitsSold": 1,
            "sales": "499.99",
            "revenue": "499.99",
        },
        {
            "courseId": april_10["b"],
            "title": "B",
            "slug": "course-b",
            "unitsSold": 1,
            "sales": "333.33",
            "revenue": "300.00",
        },
    ]


async def test_top_limits_the_courses_and_an_instant_window_is_exact(
    client: httpx.AsyncClient, admin: User, april_10: dict[str, str]
) -> None:
    response = await client.get(
        URL,
        # Orders 1 and 2 only (01:00 and 02:00; `to` is exclusive).
        params={"from": "2026-04-10T01:00:00Z", "to": "2026-04-10T03:00:00Z", "top": 1},
        headers=auth_headers(admin),
    )

    report = response.json()
    assert report["orders"]["total"] == 2
    assert report["revenue"] == "1699.99"
    assert [c["courseId"] for c in report["topCourses"]] == [april_10["a"]]


async def test_an_empty_window_is_all_zeros(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.get(
        URL, params={"from": "2001-01-01", "to": "2001-01-31"}, headers=auth_headers(admin)
    )

    report = response.json()
    assert report["orders"]["total"] == 0
    assert report["revenue"] == "0.00"
    assert report["averageOrderValue"] == "0.00"
    assert report["refunds"] == {"count": 0, "amount": "0.00"}
    assert report["topCourses"] == []


async def test_the_default_window_is_the_last_30_days(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    buyer = await make_user(session)
    course = await make_course(session, price="10.00")
    now = datetime.now(UTC)
    for age in (timedelta(days=1), timedelta(days=29), timedelta(days=31)):
        await make_order(
            session,
            user=buyer,
            courses=[course],
            status=OrderStatus.completed,
            payment_status=PaymentStatus.paid,
            created_at=now - age,
        )
    await commit_setup(session)

    report = (await client.get(URL, headers=auth_headers(admin))).json()

    assert report["orders"]["completed"] == 2
    assert report["revenue"] == "20.00"


async def test_orders_in_another_currency_are_reported_apart(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    """Orders adopted from the Node app may be in another currency (or INR in lower case):
    a sum over currencies would mean nothing."""
    buyer = await make_user(session)
    course = await make_course(session, price="100.00")
    day = datetime(2026, 5, 2, tzinfo=UTC)
    completed: dict[str, Any] = {
        "status": OrderStatus.completed,
        "payment_status": PaymentStatus.paid,
    }
    for hour, currency in enumerate(["INR", "inr", "USD"]):
        await make_order(
            session,
            user=buyer,
            courses=[course],
            created_at=day + timedelta(hours=hour),
            currency=currency,
            **completed,
        )
    await make_order(session, user=buyer, courses=[course], created_at=day, currency="USD")
    await commit_setup(session)
    window = {"from": "2026-05-02", "to": "2026-05-02"}

    inr = (await client.get(URL, params=window, headers=auth_headers(admin))).json()
    usd = (
        await client.get(URL, params={**window, "currency": " usd"}, headers=auth_headers(admin))
    ).json()

    assert inr["currency"] == "INR"
    assert inr["orders"]["total"] == inr["orders"]["completed"] == 2
    assert inr["revenue"] == inr["grossSales"] == "200.00"
    assert inr["topCourses"][0]["unitsSold"] == 2
    assert inr["ordersInOtherCurrencies"] == 2
    assert usd["currency"] == "USD"
    assert usd["orders"] == {
        "total": 2,
        "pending": 1,
        "processing": 0,
        "completed": 1,
        "cancelled": 0,
        "refunded": 0,
    }
    assert usd["revenue"] == "100.00"
    assert usd["topCourses"][0]["revenue"] == "100.00"
    assert usd["ordersInOtherCurrencies"] == 2


async def test_the_average_order_value_is_rounded_once_from_node_era_amounts(
    client: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    """Amounts of more than two decimals exist only in data adopted from the Node app
    (DECIMAL(65,30)). Two orders of 100.004: revenue 200.008 is 200.01, but the average
    is 100.004, 100.00: not the rounded revenue over two (100.005, 100.01)."""
    buyer = await make_user(session)
    course = await make_course(session, price="100.00")
    day = datetime(2026, 5, 3, tzinfo=UTC)
    for hour in range(2):
        order = await make_order(
            session,
            user=buyer,
            courses=[course],
            created_at=day + timedelta(hours=hour),
            status=OrderStatus.completed,
            payment_status=PaymentStatus.paid,
        )
        await session.execute(
            text('UPDATE "Order" SET amount = 100.004 WHERE id = :id'), {"id": order.id}
        )
    await commit_setup(session)

    report = await client.get(
        URL, params={"from": "2026-05-03", "to": "2026-05-03"}, headers=auth_headers(admin)
    )

    assert report.status_code == 200, report.text
    assert report.json()["revenue"] == "200.01"
    assert report.json()["averageOrderValue"] == "100.00"


@pytest.mark.parametrize(
    "params",
    [
        {"currency": "rupees"},
        {"from": "2026-04-11", "to": "2026-04-10"},
        {"from": "2999-01-01"},  # after `to`'s default, now
        {"top": 0},
        {"top": 51},
        {"from": "last week"},
    ],
)
async def test_a_bad_window_is_422(
    client: httpx.AsyncClient, admin: User, params: dict[str, str]
) -> None:
    response = await client.get(URL, params=params, headers=auth_headers(admin))

    assert response.status_code == 422


async def test_the_report_is_for_admins(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    await commit_setup(session)

    assert (await client.get(URL, headers=auth_headers(user))).status_code == 403
    assert (await client.get(URL)).status_code == 401
