"""Speed: the admins' order list, a learner's enrollments and the sales report are
index-backed, and a page costs a fixed number of queries.

20,000 orders (with items, coupon uses and enrollments) are bulk-loaded and analysed;
each filter is requested through the API, the statements it sends are captured, and
EXPLAIN must show no sequential scan of "Order" (or "CourseEnrollment").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from coursehub.core.database import Database
from coursehub.coupons import repository as coupons_repository
from coursehub.models import Coupon, Order, User
from tests.factories import auth_headers, make_admin, make_coupon, make_course, make_user
from tests.queries import captured, explain, explain_generic, plan_nodes, sequential_scans

pytestmark = pytest.mark.committing

ORDERS = 20_000
BUYERS = 200

BULK_ORDERS = text(
    """
    INSERT INTO "Order" (id, "orderNumber", "userId", status, amount, "originalAmount",
                         "paymentStatus", currency, metadata, "createdAt", "updatedAt")
    SELECT 'order-' || n,
           'CH-BULK-' || n,
           (CAST(:users AS text[]))[n % :buyers + 1],
           CAST((ARRAY['pending', 'processing', 'completed', 'cancelled', 'refunded'])[n % 5 + 1]
                AS "OrderStatus"),
           450, 500,
           CAST((ARRAY['pending', 'pending', 'paid', 'failed', 'refunded'])[n % 5 + 1]
                AS "PaymentStatus"),
           'INR',
           -- one order in 1,000 has a late capture to refund (GET ?refund_due=true)
           CASE WHEN n % 1000 = 0 THEN CAST('{"refundDue": true}' AS jsonb) END,
           timestamp '2026-01-01' + n * interval '7 minutes',
           timestamp '2026-01-01' + n * interval '7 minutes'
    FROM generate_series(1, :orders) AS n
    """
)
BULK_ITEMS = text(
    """
    INSERT INTO "OrderItem" (id, "orderId", "courseId", price, "createdAt")
    SELECT 'item-' || n, 'order-' || n, :course, 500, now()
    FROM generate_series(1, :orders) AS n
    """
)
BULK_USAGES = text(
    """
    INSERT INTO "CouponUsage" (id, "couponId", "userId", "orderId", discount, "createdAt")
    SELECT 'usage-' || n, (CAST(:coupons AS text[]))[n % 10 + 1], o."userId", o.id, 50, now()
    FROM generate_series(1, :orders, 4) AS n JOIN "Order" o ON o.id = 'order-' || n
    """
)


@pytest.fixture
async def many_orders(committed_db: Database) -> AsyncIterator[dict[str, Any]]:
    async with committed_db.transaction() as session:
        admin = await make_admin(session)
        buyers = [await make_user(session) for _ in range(BUYERS)]
        course = await make_course(session, price="500.00")
        coupons = [await make_coupon(session) for _ in range(10)]
        await session.execute(
            BULK_ORDERS, {"users": [b.id for b in buyers], "buyers": BUYERS, "orders": ORDERS}
        )
        await session.execute(BULK_ITEMS, {"course": course.id, "orders": ORDERS})
        await session.execute(BULK_USAGES, {"coupons": [c.id for c in coupons], "orders": ORDERS})
        # 100 courses for each of the 200 buyers: 20,000 enrollments, so a learner's page
        # must come off the index rather than a scan.
        await session.execute(
            text(
                """
                INSERT INTO "Course" (id, title, slug, duration, price, features, category,
                                      level, "isPublished", "isFeatured", "createdBy",
                                      "createdAt", "updatedAt")
                SELECT 'bulk-course-' || n, 'Course ' || n, 'bulk-course-' || n, 60, 100,
                       ARRAY['video'], 'bulk', 'beginner', true, false, 'bulk', now(), now()
                FROM generate_series(1, 100) AS n
                """
            )
        )
        await session.execute(
            text(
                """
                INSERT INTO "CourseEnrollment" (id, "userId", "courseId", status, progress,
                                                "createdAt", "updatedAt")
                SELECT 'enrollment-' || u.n || '-' || c.n, u.id, 'bulk-course-' || c.n,
                       CAST(CASE WHEN c.n % 10 = 0 THEN 'revoked' ELSE 'active' END
                            AS "EnrollmentStatus"),
                       0,
                       timestamp '2026-01-01' + c.n * interval '1 hour',
                       timestamp '2026-01-01' + c.n * interval '1 hour'
                FROM unnest(CAST(:users AS text[])) WITH ORDINALITY AS u(id, n),
                     generate_series(1, 100) AS c(n)
                """
            ),
            {"users": [b.id for b in buyers]},
        )
    async with committed_db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("Order", "OrderItem", "CouponUsage", "CourseEnrollment"):
            await autocommit.exec_driver_sql(f'VACUUM ANALYZE "{table}"')
    yield {"admin": admin, "buyer": buyers[7], "coupon": coupons[3], "course": course}


def order_scans(plan: dict[str, Any], table: str = "Order") -> list[str]:
    return [node["Node Type"] for node in sequential_scans(plan, table)]


async def test_every_admin_order_filter_is_index_backed(
    committed_db: Database, committed_client: httpx.AsyncClient, many_orders: dict[str, Any]
) -> None:
    admin: User = many_orders["admin"]
    buyer: User = many_orders["buyer"]
    coupon: Coupon = many_orders["coupon"]
    filters: list[dict[str, str]] = [
        {},
        {"status": "cancelled"},
        {"payment_status": "refunded"},
        {"refund_due": "true"},
        {"user_id": buyer.id},
        {"coupon_id": coupon.id},
        {"coupon_code": coupon.code},
        {"from": "2026-02-01", "to": "2026-02-03"},
        {"status": "completed", "from": "2026-03-01"},
        {"payment_status": "paid", "to": "2026-01-20"},
        {"user_id": buyer.id, "status": "completed", "from": "2026-01-15"},
    ]
    headers = auth_headers(admin)
    for params in filters:
        with captured(committed_db.engine) as log:
            response = await committed_client.get(
                "/api/v1/admin/orders", params={**params, "limit": 20}, headers=headers
            )
        assert response.status_code == 200, response.text
        assert response.json()["items"], params
        listing = [(s, p) for s, p in log.executed if 'FROM "Order"' in s]
        assert listing, params
        plan = await explain(committed_db.engine, *listing[0])
        assert order_scans(plan) == [], (params, plan)


async def test_the_refund_due_list_uses_its_partial_index_in_a_generic_plan(
    committed_db: Database, committed_client: httpx.AsyncClient, many_orders: dict[str, Any]
) -> None:
    """The filter spells the index's predicate with literals, so the plan a prepared
    statement settles on can prove it (a bound 'true' or key name could not)."""
    with captured(committed_db.engine) as log:
        response = await committed_client.get(
            "/api/v1/admin/orders",
            params={"refund_due": "true", "limit": 20},
            headers=auth_headers(many_orders["admin"]),
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 20  # 20 of the 20 flagged orders
    assert all(item["metadata"] == {"refundDue": True} for item in response.json()["items"])
    listing = [(s, p) for s, p in log.executed if 'FROM "Order"' in s]
    plan = await explain_generic(committed_db.engine, *listing[0])
    used = {node.get("Index Name") for node in plan_nodes(plan)}
    assert "Order_refundDue_createdAt_id_idx" in used, plan


async def test_an_order_page_costs_the_same_queries_whatever_its_size(
    committed_db: Database, committed_client: httpx.AsyncClient, many_orders: dict[str, Any]
) -> None:
    headers = auth_headers(many_orders["admin"])
    sent = []
    for limit in (1, 100):
        with captured(committed_db.engine) as log:
            response = await committed_client.get(
                "/api/v1/admin/orders", params={"limit": limit}, headers=headers
            )
        assert len(response.json()["items"]) == limit
        sent.append(len(log.statements))

    assert sent[0] == sent[1]
    assert sent[0] <= 5  # the admin, the orders with buyers, items with courses, usages


async def test_the_sales_report_and_enrollments_are_index_backed(
    committed_db: Database, committed_client: httpx.AsyncClient, many_orders: dict[str, Any]
) -> None:
    admin_headers = auth_headers(many_orders["admin"])
    with captured(committed_db.engine) as log:
        report = await committed_client.get(
            "/api/v1/admin/reports/sales",
            params={"from": "2026-02-01", "to": "2026-02-07"},
            headers=admin_headers,
        )
    assert report.status_code == 200
    assert report.json()["orders"]["total"] > 0
    aggregates = [(s, p) for s, p in log.executed if "GROUP BY" in s]
    assert len(aggregates) == 2
    for statement, parameters in aggregates:
        assert order_scans(await explain(committed_db.engine, statement, parameters)) == []

    with captured(committed_db.engine) as log:
        mine = await committed_client.get(
            "/api/v1/me/enrollments", headers=auth_headers(many_orders["buyer"])
        )
    assert len(mine.json()["items"]) == 20  # the default page; 90 are active
    [listing] = [(s, p) for s, p in log.executed if 'FROM "CourseEnrollment"' in s]
    plan = await explain(committed_db.engine, *listing)
    assert order_scans(plan, "CourseEnrollment") == [], plan

    async with committed_db.transaction() as session:
        assert await session.scalar(select(Order.id).limit(1)) is not None


FEW_USAGES = text(
    """
    INSERT INTO "CouponUsage" (id, "couponId", "userId", "orderId", discount, "createdAt")
    SELECT 'few-usage-' || n, :coupon, o."userId", o.id, 50, now()
    FROM generate_series(2, 400, 18) AS n JOIN "Order" o ON o.id = 'order-' || n
    """
)


async def test_coupon_uses_are_counted_off_the_indexes(
    committed_db: Database, committed_client: httpx.AsyncClient, many_orders: dict[str, Any]
) -> None:
    """Uses count the usages whose orders are not cancelled: each counting query finds the
    usages by `CouponUsage_couponId_idx` (or `_userId_idx`) and their orders by primary key,
    for the buyer's preview (limit and "already used by you") and the admins' figures,
    never scanning the orders, however many usages the coupon has.

    FEWUSES is limited as a checkout counts one: 23 usages among the 20,000 orders (of
    even-numbered orders, none of which has one yet), 5 of them cancelled. The fixture's
    coupon has 1,000 (orders 13, 33, 53, …), all of cancelled orders.
    """
    async with committed_db.transaction() as session:
        coupon = await make_coupon(session, code="FEWUSES", max_uses=50)
        await session.execute(FEW_USAGES, {"coupon": coupon.id})
        coupon_id = coupon.id
    async with committed_db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql('VACUUM ANALYZE "CouponUsage"')
    numbers = range(2, 401, 18)
    counting_uses = sum(1 for n in numbers if n % 5 != 3)  # BULK_ORDERS: n % 5 == 3 cancelled
    assert (len(numbers), counting_uses) == (23, 18)
    admin_headers = auth_headers(many_orders["admin"])

    with captured(committed_db.engine) as log:
        preview = await committed_client.post(
            "/api/v1/coupons/validate",
            json={"code": "FEWUSES", "courseIds": [many_orders["course"].id]},
            headers=auth_headers(many_orders["buyer"]),
        )
        one = await committed_client.get(
            f"/api/v1/admin/coupons/{coupon_id}", headers=admin_headers
        )
        listed = await committed_client.get("/api/v1/admin/coupons", headers=admin_headers)
    assert preview.status_code == 200, preview.text
    assert (one.json()["uses"], one.json()["remainingUses"]) == (18, 50 - 18)
    assert one.json()["totalDiscount"] == "900.00"  # 18 × 50
    assert listed.status_code == 200
    counting = [(s, p) for s, p in log.executed if 'FROM "CouponUsage"' in s]
    assert len(counting) == 4  # the preview's coupon and count; one coupon; the list
    for statement, parameters in counting:
        plan = await explain(committed_db.engine, statement, parameters)
        assert order_scans(plan) == [], (statement, plan)
        assert order_scans(plan, "CouponUsage") == [], (statement, plan)

    popular: Coupon = many_orders["coupon"]
    with captured(committed_db.engine) as log:
        read = await committed_client.get(
            f"/api/v1/admin/coupons/{popular.id}", headers=admin_headers
        )
        async with committed_db.transaction() as session:
            assert await coupons_repository.count_uses(session, popular.id) == 0
    assert (read.json()["uses"], read.json()["totalDiscount"]) == (0, "0.00")
    counting = [(s, p) for s, p in log.executed if 'FROM "CouponUsage"' in s]
    assert len(counting) == 2
    for statement, parameters in counting:
        plan = await explain(committed_db.engine, statement, parameters)
        assert order_scans(plan) == [], (statement, plan)
