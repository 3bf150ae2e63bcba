"""POST /orders: amounts, coupons, free orders, idempotency, and refusals that leave nothing.

Setup is committed (a savepoint release inside the test's outer transaction) so that a
refused request, which rolls its own work back, does not take the setup with it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.core.models import utcnow
from coursehub.models import (
    CouponType,
    CouponUsage,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderItem,
    OrderStatus,
    PaymentStatus,
)
from coursehub.orders import checkout as checkout_module
from coursehub.orders.numbers import PATTERN
from tests.factories import (
    auth_headers,
    make_coupon,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)
from tests.orders.invariants import assert_order_invariants, count_rows
from tests.queries import captured

URL = "/api/v1/orders"


async def checkout(
    client: httpx.AsyncClient,
    user: Any,
    course_ids: list[str],
    *,
    coupon: str | None = None,
    key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"courseIds": course_ids, **extra}
    if coupon is not None:
        body["couponCode"] = coupon
    headers = dict(user) if isinstance(user, dict) else auth_headers(user)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(URL, json=body, headers=headers)


async def test_checkout_places_a_pending_order_with_snapshotted_items(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    first = await make_course(session, title="Rust", price="1499.00")
    second = await make_course(session, title="Go", price="999.50")
    await session.commit()

    response = await checkout(client, user, [first.id, second.id], paymentMethod="UPI")

    assert response.status_code == 201, response.text
    body = response.json()
    assert PATTERN.match(body["orderNumber"]), body["orderNumber"]
    assert body["status"] == "pending"
    assert body["paymentStatus"] == "pending"
    assert body["paymentMethod"] == "upi"
    assert body["currency"] == "INR"
    assert (body["originalAmount"], body["discount"], body["amount"]) == (
        "2498.50",
        "0.00",
        "2498.50",
    )
    assert body["coupon"] is None
    assert [(i["courseId"], i["price"], i["course"]["title"]) for i in body["items"]] == [
        (second.id, "999.50", "Go"),
        (first.id, "1499.00", "Rust"),
    ]
    # The price is a snapshot: a later price change leaves the order alone.
    first.price = Decimal("1.00")
    await session.commit()
    again = await client.get(f"{URL}/{body['orderNumber']}", headers=auth_headers(user))
    assert again.json()["items"][1]["price"] == "1499.00"
    assert await assert_order_invariants(session) == 1


async def test_order_numbers_are_distinct_and_unpredictable(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    courses = [await make_course(session) for _ in range(5)]
    await session.commit()

    numbers = [(await checkout(client, user, [c.id])).json()["orderNumber"] for c in courses]

    assert len(set(numbers)) == 5
    suffixes = [n.rsplit("-", 1)[1] for n in numbers]
    assert len(set(suffixes)) == 5  # not a counter: no shared prefix pattern to step through
    assert all(PATTERN.match(n) for n in numbers)


@pytest.mark.parametrize(
    ("prices", "coupon", "expected"),
    [
        # 10% of 100.05 is 10.005: half-up makes it 10.01 (banker's rounding would say 10.00).
        (["100.05"], {"value": "10"}, ("100.05", "10.01", "90.04")),
        # 12.5% of 99.99 = 12.49875 → 12.50.
        (["99.99"], {"value": "12.5"}, ("99.99", "12.50", "87.49")),
        # 33% of 0.05 = 0.0165 → 0.02.
        (["0.05"], {"value": "33"}, ("0.05", "0.02", "0.03")),
        # Capped by maxDiscount.
        (
            ["1000.00", "999.00"],
            {"value": "50", "max_discount": "300"},
            ("1999.00", "300.00", "1699.00"),
        ),
        # A cap above the discount changes nothing.
        (["200.00"], {"value": "10", "max_discount": "500"}, ("200.00", "20.00", "180.00")),
        # Fixed below the original.
        (["499.00"], {"type": CouponType.fixed, "value": "100"}, ("499.00", "100.00", "399.00")),
    ],
)
async def test_coupon_amounts_are_rounded_half_up_to_the_paisa(
    client: httpx.AsyncClient,
    session: AsyncSession,
    prices: list[str],
    coupon: dict[str, Any],
    expected: tuple[str, str, str],
) -> None:
    user = await make_user(session)
    courses = [await make_course(session, price=p) for p in prices]
    made = await make_coupon(session, code="ROUND", **coupon)
    await session.commit()

    response = await checkout(client, user, [c.id for c in courses], coupon="round")

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["originalAmount"], body["discount"], body["amount"]) == expected
    assert body["coupon"] == {"code": "ROUND", "discount": expected[1]}
    usage = (await session.execute(select(CouponUsage))).scalar_one()
    assert (usage.coupon_id, usage.user_id, usage.discount) == (
        made.id,
        user.id,
        Decimal(expected[1]),
    )
    assert await assert_order_invariants(session) == 1


async def assert_free_order_completed(
    session: AsyncSession, body: dict[str, Any], user: Any
) -> None:
    assert body["amount"] == "0.00"
    assert body["status"] == "completed"
    assert body["paymentStatus"] == "paid"
    assert body["paymentMethod"] == "free"
    enrollments = (
        (await session.execute(select(CourseEnrollment).where(CourseEnrollment.user_id == user.id)))
        .scalars()
        .all()
    )
    assert sorted(e.course_id for e in enrollments) == sorted(i["courseId"] for i in body["items"])
    assert all(
        e.status == EnrollmentStatus.active and e.order_id == body["id"] for e in enrollments
    )
    assert await assert_order_invariants(session) >= 1


async def test_a_fixed_coupon_above_the_price_makes_a_free_completed_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    course = await make_course(session, price="299.00")
    await make_coupon(session, code="BIGFIX", type=CouponType.fixed, value="500")
    await session.commit()

    response = await checkout(client, user, [course.id], coupon="BIGFIX", paymentMethod="card")

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["originalAmount"], body["discount"]) == ("299.00", "299.00")
    await assert_free_order_completed(session, body, user)


async def test_a_hundred_percent_coupon_completes_the_order_at_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    courses = [await make_course(session, price="1499.00") for _ in range(3)]
    await make_coupon(session, code="ALLFREE", value="100")
    await session.commit()

    response = await checkout(client, user, [c.id for c in courses], coupon="allfree")

    assert response.status_code == 201, response.text
    await assert_free_order_completed(session, response.json(), user)


async def test_a_free_course_completes_without_a_coupon_and_reactivates_a_revoked_enrollment(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    course = await make_course(session, price="0")
    await make_enrollment(session, user=user, course=course, status=EnrollmentStatus.revoked)
    await session.commit()

    response = await checkout(client, user, [course.id])

    assert response.status_code == 201, response.text
    await assert_free_order_completed(session, response.json(), user)


# --- refusals ------------------------------------------------------------------------------


async def refused(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: Any,
    course_ids: list[str],
    *,
    status: int,
    code: str,
    coupon: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    before = await count_rows(session)
    response = await checkout(client, user, course_ids, coupon=coupon, **extra)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await count_rows(session) == before, "a refused checkout left rows behind"
    return dict(body)


async def test_course_list_rules(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    course = await make_course(session)
    draft = await make_course(session, published=False)
    await session.commit()
    # A refused request rolls the session back, expiring what it holds: keep plain values.
    buyer, course_id, draft_id = auth_headers(user), course.id, draft.id

    await refused(client, session, buyer, [], status=422, code="validation_failed")
    await refused(
        client, session, buyer, [course_id, course_id], status=422, code="validation_failed"
    )
    many = [f"id-{n}" for n in range(21)]
    await refused(client, session, buyer, many, status=422, code="validation_failed")
    body = await refused(
        client, session, buyer, [course_id, "nope"], status=422, code="course_unavailable"
    )
    assert body["courseIds"] == ["nope"]
    body = await refused(client, session, buyer, [draft_id], status=422, code="course_unavailable")
    assert body["courseIds"] == [draft_id]
    await refused(
        client,
        session,
        buyer,
        [course_id],
        status=422,
        code="validation_failed",
        paymentMethod="free",
    )


async def test_an_active_enrollment_is_refused_a_revoked_one_is_not(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    owned = await make_course(session)
    lapsed = await make_course(session)
    await make_enrollment(session, user=user, course=owned)
    await make_enrollment(session, user=user, course=lapsed, status=EnrollmentStatus.revoked)
    await session.commit()
    buyer, owned_id, lapsed_id = auth_headers(user), owned.id, lapsed.id

    body = await refused(
        client, session, buyer, [lapsed_id, owned_id], status=409, code="already_enrolled"
    )
    assert body["courseIds"] == [owned_id]
    assert (await checkout(client, buyer, [lapsed_id])).status_code == 201


async def test_a_course_in_another_pending_order_is_refused_naming_that_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    other_user = await make_user(session)
    held, free = await make_course(session), await make_course(session)
    pending = await make_order(session, user=user, courses=[held])
    await make_order(session, user=user, courses=[free], status=OrderStatus.cancelled)
    await make_order(session, user=other_user, courses=[free])
    await session.commit()
    buyer, free_id, held_id, number = auth_headers(user), free.id, held.id, pending.order_number

    body = await refused(
        client, session, buyer, [free_id, held_id], status=409, code="course_in_pending_order"
    )
    assert body["orderNumber"] == number
    assert number in body["detail"]
    assert body["courseIds"] == [held_id]
    # A cancelled order of the same course, or another buyer's pending one, is no obstacle.
    assert (await checkout(client, buyer, [free_id])).status_code == 201


async def test_each_coupon_refusal_has_its_own_code_and_leaves_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    someone = await make_user(session)
    course = await make_course(session, price="500.00")
    now = utcnow()
    await make_coupon(session, code="LATER", starts=now + timedelta(days=1))
    await make_coupon(
        session, code="OLD", starts=now - timedelta(days=9), ends=now - timedelta(days=1)
    )
    await make_coupon(session, code="BIGSPEND", min_purchase="500.01")
    used_up = await make_coupon(session, code="ONCE", max_uses=1)
    mine = await make_coupon(session, code="MINE")
    other = await make_course(session)
    await make_order(session, user=someone, courses=[other], coupon=used_up, discount="10")
    await make_order(session, user=user, courses=[other], coupon=mine, discount="10")
    await session.commit()
    buyer, course_id = auth_headers(user), course.id

    cases = [
        ("NOPE", 404, "coupon_not_found"),
        ("LATER", 422, "coupon_not_started"),
        ("OLD", 422, "coupon_expired"),
        ("BIGSPEND", 422, "coupon_below_minimum_purchase"),
        ("ONCE", 409, "coupon_used_up"),
        ("mine", 409, "coupon_already_used"),
    ]
    for code, status, error in cases:
        await refused(client, session, buyer, [course_id], status=status, code=error, coupon=code)
    await assert_order_invariants(session)


async def test_the_coupon_window_and_minimum_are_inclusive(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    course = await make_course(session, price="500.00")
    await make_coupon(session, code="EXACT", min_purchase="500.00")
    await session.commit()

    response = await checkout(client, user, [course.id], coupon="EXACT")

    assert response.status_code == 201, response.text


# --- idempotency ---------------------------------------------------------------------------


async def test_the_same_idempotency_key_returns_the_same_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    stranger = await make_user(session)
    course = await make_course(session)
    await session.commit()

    first = await checkout(client, user, [course.id], key="retry-1")
    second = await checkout(client, user, [course.id], key="retry-1")

    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    orders = (await session.execute(select(Order))).scalars().all()
    assert len(orders) == 1
    # The key belongs to its user: another user's identical key is another order.
    assert (await checkout(client, stranger, [course.id], key="retry-1")).status_code == 201


async def test_an_idempotency_key_reused_for_another_order_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    first, second = await make_course(session), await make_course(session)
    await session.commit()
    buyer, second_id = auth_headers(user), second.id
    assert (await checkout(client, buyer, [first.id], key="k")).status_code == 201

    await refused(
        client, session, buyer, [second_id], status=409, code="idempotency_key_reused", key="k"
    )
    await refused(
        client,
        session,
        buyer,
        [second_id],
        status=422,
        code="invalid_idempotency_key",
        key="x" * 256,
    )


async def test_checkout_needs_a_signed_in_user(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    course = await make_course(session)
    await session.commit()

    response = await client.post(URL, json={"courseIds": [course.id]})

    assert response.status_code == 401
    assert await count_rows(session) == {"orders": 0, "items": 0, "usages": 0, "enrollments": 0}


async def test_payment_status_of_a_fresh_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    course = await make_course(session)
    await session.commit()

    body = (await checkout(client, user, [course.id])).json()

    order = (await session.execute(select(Order))).scalar_one()
    assert order.payment_status == PaymentStatus.pending
    assert order.order_number == body["orderNumber"]
    assert order.metadata_ is None


# --- legacy prices, free orders with a coupon, order-number collisions --------------------


async def test_legacy_prices_are_snapshotted_to_the_paisa_and_summed_as_snapshotted(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # DECIMAL(65,30) holds prices with more than two decimals (data adopted from the Node
    # app); the API refuses them, so they are written here directly.
    user = await make_user(session)
    prices = ["99.995", "0.004", "10.005"]
    courses = [await make_course(session, price=p) for p in prices]
    await session.commit()

    response = await checkout(client, user, [c.id for c in courses])

    assert response.status_code == 201, response.text
    body = response.json()
    assert [i["price"] for i in body["items"]] == ["100.00", "0.00", "10.01"]
    # The sum of the rounded prices (110.01), not the rounded sum (110.004 → 110.00).
    assert (body["originalAmount"], body["amount"]) == ("110.01", "110.01")
    items = (await session.execute(select(OrderItem).order_by(OrderItem.price))).scalars().all()
    assert [i.price for i in items] == [Decimal("0.00"), Decimal("10.01"), Decimal("100.00")]
    assert await assert_order_invariants(session) == 1


async def test_a_coupon_on_a_free_order_is_refused_and_spends_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    free = await make_course(session, price="0")
    almost = await make_course(session, price="0.004")  # rounds to a free 0.00
    coupon = await make_coupon(session, code="ONEUSE", max_uses=1)
    await session.commit()
    buyer, free_id, almost_id, coupon_id = auth_headers(user), free.id, almost.id, coupon.id

    for course_ids in ([free_id], [free_id, almost_id]):
        body = await refused(
            client,
            session,
            buyer,
            course_ids,
            status=422,
            code="coupon_not_applicable",
            coupon="oneuse",
        )
        assert "free" in body["detail"]
    # The coupon's one use is still there: the free order goes through without it.
    assert (await checkout(client, buyer, [free_id])).status_code == 201
    assert (await session.execute(select(CouponUsage))).scalars().all() == []
    paid = await make_course(session, price="100.00")
    await session.commit()
    response = await checkout(client, buyer, [paid.id], coupon="ONEUSE")
    assert response.status_code == 201, response.text
    usage = (await session.execute(select(CouponUsage))).scalar_one()
    assert usage.coupon_id == coupon_id
    await assert_order_invariants(session)


@pytest.mark.parametrize(
    ("value", "max_discount"),
    [
        ("10", "0"),  # capped at nothing
        ("0.1", None),  # 0.1% of 4.00 = 0.004, less than a paisa
    ],
)
async def test_a_coupon_that_takes_nothing_off_is_refused_and_spends_nothing(
    client: httpx.AsyncClient, session: AsyncSession, value: str, max_discount: str | None
) -> None:
    """Its usage would spend the buyer's one use and one of its maxUses for nothing; the
    preview says the same (tests/coupons)."""
    user = await make_user(session)
    course = await make_course(session, price="4.00")
    await make_coupon(session, code="ZERO", max_uses=1, value=value, max_discount=max_discount)
    await session.commit()
    buyer, course_id = auth_headers(user), course.id

    body = await refused(
        client, session, buyer, [course_id], status=422, code="coupon_not_applicable", coupon="zero"
    )
    preview = await client.post(
        "/api/v1/coupons/validate", json={"code": "zero", "courseIds": [course_id]}, headers=buyer
    )

    assert "takes nothing off" in body["detail"]
    assert (preview.status_code, preview.json()["code"]) == (422, "coupon_not_applicable")
    assert (await session.execute(select(CouponUsage))).scalars().all() == []


async def test_a_taken_order_number_is_retried_with_a_new_one(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(session)
    other = await make_user(session)
    course, elsewhere = await make_course(session), await make_course(session)
    taken = await make_order(session, user=other, courses=[elsewhere])
    await session.commit()
    taken_number = taken.order_number
    fresh_numbers = iter([taken_number, "CH-20260101-FRESH2"])
    asked: list[str] = []

    def colliding_number(now: Any) -> str:
        asked.append(next(fresh_numbers))
        return asked[-1]

    monkeypatch.setattr(checkout_module, "new_order_number", colliding_number)

    response = await checkout(client, user, [course.id], coupon=None)

    assert response.status_code == 201, response.text
    assert response.json()["orderNumber"] == "CH-20260101-FRESH2"
    assert asked == [taken_number, "CH-20260101-FRESH2"]
    mine = (await session.execute(select(Order).where(Order.user_id == user.id))).scalars().all()
    assert [o.order_number for o in mine] == ["CH-20260101-FRESH2"]
    assert (await count_rows(session))["items"] == 2  # the taken order's and the new one's
    await assert_order_invariants(session)


async def test_when_every_order_number_collides_the_checkout_is_refused_with_nothing_written(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(session)
    other = await make_user(session)
    course, elsewhere = await make_course(session), await make_course(session)
    coupon = await make_coupon(session, code="LIMITED", max_uses=5)
    taken = await make_order(session, user=other, courses=[elsewhere])
    await session.commit()
    buyer, course_id, taken_number = auth_headers(user), course.id, taken.order_number
    attempts: list[str] = []

    def always_taken(now: Any) -> str:
        attempts.append(taken_number)
        return taken_number

    monkeypatch.setattr(checkout_module, "new_order_number", always_taken)

    body = await refused(
        client,
        session,
        buyer,
        [course_id],
        status=409,
        code="order_number_unavailable",
        coupon=coupon.code,
    )

    assert len(attempts) == checkout_module.NUMBER_ATTEMPTS
    assert "try again" in body["detail"]


async def test_a_coupon_costs_checkout_no_extra_round_trip(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    """The coupon is read in the courses' statement: a checkout with an (unlimited) coupon
    sends as many statements as one without."""
    first, second = await make_user(session), await make_user(session)
    course = await make_course(session, price="500.00")
    await make_coupon(session, code="TENOFF", type=CouponType.fixed, value="10.00")
    await session.commit()

    with captured(engine) as without:
        response = await checkout(client, first, [course.id])
        assert response.status_code == 201, response.text
    with captured(engine) as with_coupon:
        response = await checkout(client, second, [course.id], coupon="tenoff")
        assert response.status_code == 201, response.text
    assert response.json()["amount"] == "490.00"
    assert with_coupon.count == without.count > 0


async def test_an_unknown_course_is_reported_before_an_unknown_coupon(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    course = await make_course(session)
    await make_coupon(session, code="REAL")
    await session.commit()
    buyer, course_id = auth_headers(user), course.id  # (a refusal expires the session's objects)

    await refused(
        client, session, buyer, ["nope"], status=422, code="course_unavailable", coupon="NOPE"
    )
    await refused(
        client, session, buyer, ["nope"], status=422, code="course_unavailable", coupon="REAL"
    )
    await refused(
        client, session, buyer, [course_id], status=404, code="coupon_not_found", coupon="NOPE"
    )
