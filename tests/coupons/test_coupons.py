"""Coupons: the admins' CRUD (/admin/coupons) and the buyers' preview (POST /coupons/validate)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.core.models import utcnow
from coursehub.models import Coupon, CouponUsage, OrderStatus, PaymentStatus
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_order,
    make_user,
)
from tests.queries import captured

ADMIN_URL = "/api/v1/admin/coupons"
VALIDATE_URL = "/api/v1/coupons/validate"


def coupon_body(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    body: dict[str, Any] = {
        "code": "diwali-25",
        "type": "percentage",
        "value": "25",
        "maxDiscount": "500",
        "startDate": (now - timedelta(days=1)).isoformat(),
        "endDate": (now + timedelta(days=10)).isoformat(),
        "maxUses": 100,
    }
    body.update(overrides)
    return body


async def test_admin_creates_a_coupon_with_its_code_upper_cased(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await session.commit()

    response = await client.post(ADMIN_URL, json=coupon_body(), headers=auth_headers(admin))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["code"] == "DIWALI-25"
    assert body["createdBy"] == admin.id
    assert (body["uses"], body["remainingUses"], body["totalDiscount"]) == (0, 100, "0.00")
    assert body["maxDiscount"] == "500.00"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"code": "ab"}, "code"),
        ({"code": "has space"}, "code"),
        ({"code": "x" * 33}, "code"),
        ({"code": "naïve"}, "code"),
        ({"value": "0"}, "value"),
        ({"value": "100.01"}, "value"),
        ({"type": "fixed", "value": "-1"}, "value"),
        ({"maxDiscount": "-1"}, "maxDiscount"),
        ({"minPurchase": "-0.01"}, "minPurchase"),
        ({"maxUses": 0}, "maxUses"),
        ({"endDate": (utcnow() - timedelta(days=2)).isoformat()}, "endDate"),
        ({"startDate": "2026-01-01T00:00:00"}, "startDate"),  # no time zone
    ],
)
async def test_invalid_coupons_are_refused(
    client: httpx.AsyncClient, session: AsyncSession, overrides: dict[str, Any], field: str
) -> None:
    admin = await make_admin(session)
    await session.commit()
    headers = auth_headers(admin)

    response = await client.post(ADMIN_URL, json=coupon_body(**overrides), headers=headers)

    assert response.status_code == 422, response.text
    assert field in {e["field"] for e in response.json()["errors"]}
    assert (await session.execute(select(Coupon))).scalars().all() == []


async def test_a_hundred_percent_and_unlimited_coupon_is_fine(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await session.commit()

    response = await client.post(
        ADMIN_URL, json=coupon_body(value="100", maxUses=None), headers=auth_headers(admin)
    )

    assert response.status_code == 201, response.text
    assert response.json()["remainingUses"] is None


async def test_codes_are_unique_whatever_their_case(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await make_coupon(session, code="SAVE10")
    await session.commit()
    headers = auth_headers(admin)

    response = await client.post(ADMIN_URL, json=coupon_body(code="save10"), headers=headers)

    assert (response.status_code, response.json()["code"]) == (409, "coupon_code_taken")


async def test_admin_reads_uses_remaining_and_discount_given(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    buyers = [await make_user(session) for _ in range(3)]
    coupon = await make_coupon(session, code="STATS", max_uses=5)
    course = await make_course(session)
    await make_order(session, user=buyers[0], courses=[course], coupon=coupon, discount="49.90")
    await make_order(session, user=buyers[1], courses=[course], coupon=coupon, discount="10.05")
    # A refunded order's use counts (the coupon was used); a cancelled order's does not.
    await make_order(
        session,
        user=buyers[2],
        courses=[course],
        coupon=coupon,
        discount="5.00",
        status=OrderStatus.refunded,
        payment_status=PaymentStatus.refunded,
    )
    await make_order(
        session,
        user=buyers[2],
        courses=[course],
        coupon=coupon,
        discount="1000.00",
        status=OrderStatus.cancelled,
    )
    await make_coupon(session, code="UNUSED")
    await session.commit()
    headers = auth_headers(admin)

    one = await client.get(f"{ADMIN_URL}/{coupon.id}", headers=headers)
    listed = await client.get(ADMIN_URL, headers=headers)

    assert one.status_code == 200
    assert (one.json()["uses"], one.json()["remainingUses"], one.json()["totalDiscount"]) == (
        3,
        2,
        "64.95",
    )
    by_code = {c["code"]: c for c in listed.json()["items"]}
    assert (by_code["STATS"]["uses"], by_code["STATS"]["totalDiscount"]) == (3, "64.95")
    assert (by_code["UNUSED"]["uses"], by_code["UNUSED"]["totalDiscount"]) == (0, "0.00")


async def test_admin_list_is_keyset_paged_in_one_query(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    admin = await make_admin(session)
    made = [await make_coupon(session, code=f"PAGE{i}") for i in range(5)]
    await session.commit()
    headers = auth_headers(admin)
    seen: list[str] = []
    cursor = None
    with captured(engine) as log:
        for _ in range(3):
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await client.get(ADMIN_URL, params=params, headers=headers)).json()
            seen += [c["code"] for c in page["items"]]
            cursor = page["next_cursor"]
    assert sorted(seen) == sorted(c.code for c in made)
    assert len(seen) == 5 and cursor is None
    coupon_queries = [s for s in log.statements if 'FROM "Coupon"' in s]
    assert len(coupon_queries) == 3  # one per page, aggregates included


async def test_update_changes_only_what_is_sent_and_checks_the_result(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    coupon = await make_coupon(session, code="EDIT", value="10")
    await make_coupon(session, code="TAKEN")
    await session.commit()
    headers, coupon_id = auth_headers(admin), coupon.id
    url = f"{ADMIN_URL}/{coupon_id}"

    ended = await client.patch(url, json={"endDate": utcnow().isoformat()}, headers=headers)
    too_big = await client.patch(url, json={"value": "150"}, headers=headers)
    backwards = await client.patch(url, json={"endDate": "2000-01-01T00:00:00Z"}, headers=headers)
    taken = await client.patch(url, json={"code": "taken"}, headers=headers)
    null_code = await client.patch(url, json={"code": None}, headers=headers)
    fixed = await client.patch(url, json={"type": "fixed", "value": "150"}, headers=headers)

    assert ended.status_code == 200, ended.text
    assert ended.json()["value"] == "10.00"
    # Read back from the database (after the last PATCH, `fixed`): two decimals, not 30.
    listed = await client.get(ADMIN_URL, headers=headers)
    assert {c["code"]: c["value"] for c in listed.json()["items"]}["EDIT"] == "150.00"
    assert (too_big.status_code, too_big.json()["code"]) == (422, "invalid_coupon")
    assert (backwards.status_code, backwards.json()["code"]) == (422, "invalid_coupon")
    assert (taken.status_code, taken.json()["code"]) == (409, "coupon_code_taken")
    assert null_code.status_code == 422
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["type"] == "fixed"


async def test_a_used_coupon_cannot_be_deleted_an_unused_one_can(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    used = await make_coupon(session, code="USED")
    # Used only by an order since cancelled: no use counts, yet the order keeps it.
    once_used = await make_coupon(session, code="ONCEUSED")
    unused = await make_coupon(session, code="FRESH")
    buyer, course = await make_user(session), await make_course(session)
    await make_order(
        session,
        user=buyer,
        courses=[course],
        coupon=used,
        discount="5",
        status=OrderStatus.completed,
    )
    await make_order(
        session,
        user=buyer,
        courses=[course],
        coupon=once_used,
        discount="5",
        status=OrderStatus.cancelled,
    )
    await session.commit()
    headers, unused_id = auth_headers(admin), unused.id
    used_ids = [used.id, once_used.id]

    refused = [await client.delete(f"{ADMIN_URL}/{i}", headers=headers) for i in used_ids]
    deleted = await client.delete(f"{ADMIN_URL}/{unused_id}", headers=headers)
    again = await client.delete(f"{ADMIN_URL}/{unused_id}", headers=headers)

    assert [(r.status_code, r.json()["code"]) for r in refused] == [(409, "coupon_in_use")] * 2
    assert deleted.status_code == 204
    assert again.status_code == 404
    codes = (await session.execute(select(Coupon.code))).scalars().all()
    assert sorted(codes) == ["ONCEUSED", "USED"]


async def test_coupon_admin_needs_an_admin(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()

    assert (await client.get(ADMIN_URL)).status_code == 401
    response = await client.post(ADMIN_URL, json=coupon_body(), headers=auth_headers(user))
    assert response.status_code == 403


# --- validate --------------------------------------------------------------------------


async def test_validate_previews_the_amounts(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    courses = [await make_course(session, price="1000.05"), await make_course(session, price="0")]
    await make_coupon(session, code="PREVIEW", value="10", max_uses=3)
    await session.commit()

    response = await client.post(
        VALIDATE_URL,
        json={"code": "preview", "courseIds": [c.id for c in courses]},
        headers=auth_headers(user),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    # 10% of 1000.05 = 100.005 → 100.01, half-up.
    assert (body["originalAmount"], body["discount"], body["amount"]) == (
        "1000.05",
        "100.01",
        "900.04",
    )
    assert body["code"] == "PREVIEW"


async def test_validate_says_exactly_why_a_coupon_does_not_apply(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    other = await make_user(session)
    course = await make_course(session, price="100.00")
    now = utcnow()
    await make_coupon(session, code="SOON", starts=now + timedelta(hours=1))
    await make_coupon(
        session, code="GONE", starts=now - timedelta(days=5), ends=now - timedelta(seconds=1)
    )
    await make_coupon(session, code="BIGONLY", min_purchase="1000")
    full = await make_coupon(session, code="FULL", max_uses=1)
    mine = await make_coupon(session, code="MINE")
    spare = await make_course(session)
    await make_order(session, user=other, courses=[spare], coupon=full, discount="1")
    await make_order(session, user=user, courses=[spare], coupon=mine, discount="1")
    # Its one use, and the user's own, were by orders since cancelled: it applies.
    again = await make_coupon(session, code="AGAIN", max_uses=1)
    for buyer in (user, other):
        await make_order(
            session,
            user=buyer,
            courses=[spare],
            coupon=again,
            discount="1",
            status=OrderStatus.cancelled,
        )
    await session.commit()
    headers, course_id = auth_headers(user), course.id

    expected = {
        "NOPE": (404, "coupon_not_found"),
        "SOON": (422, "coupon_not_started"),
        "GONE": (422, "coupon_expired"),
        "BIGONLY": (422, "coupon_below_minimum_purchase"),
        "FULL": (409, "coupon_used_up"),
        "MINE": (409, "coupon_already_used"),
    }
    for code, (status, error) in expected.items():
        response = await client.post(
            VALIDATE_URL, json={"code": code, "courseIds": [course_id]}, headers=headers
        )
        assert (response.status_code, response.json()["code"]) == (status, error), code
    applies = await client.post(
        VALIDATE_URL, json={"code": "again", "courseIds": [course_id]}, headers=headers
    )
    assert applies.status_code == 200, applies.text
    assert applies.json()["discount"] == "10.00"
    draft = await client.post(
        VALIDATE_URL, json={"code": "MINE", "courseIds": ["missing"]}, headers=headers
    )
    assert (draft.status_code, draft.json()["code"]) == (422, "course_unavailable")
    assert (
        await client.post(VALIDATE_URL, json={"code": "X", "courseIds": [course_id]})
    ).status_code == 401


async def test_validate_sums_prices_rounded_as_checkout_snapshots_them(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # Legacy prices with more than two decimals (DECIMAL(65,30)), written directly.
    user = await make_user(session)
    courses = [await make_course(session, price=p) for p in ("99.995", "0.004", "10.005")]
    await make_coupon(session, code="LEGACY", value="10")
    await session.commit()

    response = await client.post(
        VALIDATE_URL,
        json={"code": "legacy", "courseIds": [c.id for c in courses]},
        headers=auth_headers(user),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    # 100.00 + 0.00 + 10.01 (not 110.004 → 110.00); 10% of 110.01 = 11.001 → 11.00.
    assert (body["originalAmount"], body["discount"], body["amount"]) == (
        "110.01",
        "11.00",
        "99.01",
    )


async def test_validate_says_a_free_order_needs_no_coupon(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    free = await make_course(session, price="0")
    almost = await make_course(session, price="0.004")  # rounds to 0.00
    await make_coupon(session, code="NOTHING", max_uses=1)
    await session.commit()
    # A refused request rolls the session back, expiring what it holds: keep plain values.
    headers, free_id, almost_id = auth_headers(user), free.id, almost.id

    for course_ids in ([free_id], [free_id, almost_id]):
        response = await client.post(
            VALIDATE_URL, json={"code": "nothing", "courseIds": course_ids}, headers=headers
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "coupon_not_applicable"
        assert "free" in body["detail"]
    assert (await session.execute(select(func.count()).select_from(CouponUsage))).scalar_one() == 0


async def test_validate_treats_a_limit_of_zero_as_checkout_does(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The API refuses maxUses 0, but a coupon adopted from the Node app can have it: no use
    left, in the preview as at checkout (which answered 409 while the preview said 200)."""
    user = await make_user(session)
    course = await make_course(session, price="100.00")
    await make_coupon(session, code="NONELEFT", max_uses=0)
    await session.commit()
    headers, course_id = auth_headers(user), course.id
    body = {"code": "noneleft", "courseIds": [course_id]}

    preview = await client.post(VALIDATE_URL, json=body, headers=headers)
    checkout = await client.post(
        "/api/v1/orders", json={"courseIds": [course_id], "couponCode": "noneleft"}, headers=headers
    )

    assert (preview.status_code, preview.json()["code"]) == (409, "coupon_used_up")
    assert (checkout.status_code, checkout.json()["code"]) == (409, "coupon_used_up")


async def test_a_minimum_purchase_of_more_places_is_the_one_shown(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A Node-era minimum of 500.123456 is shown as 500.12; a purchase of 500.12 meets it
    (it was refused, the message saying both were 500.12)."""
    user = await make_user(session)
    exact = await make_course(session, price="500.12")
    short = await make_course(session, price="500.11")
    await make_coupon(session, code="MIN500", min_purchase="500.123456")
    await session.commit()
    headers, exact_id, short_id = auth_headers(user), exact.id, short.id

    met = await client.post(
        VALIDATE_URL, json={"code": "min500", "courseIds": [exact_id]}, headers=headers
    )
    below = await client.post(
        VALIDATE_URL, json={"code": "min500", "courseIds": [short_id]}, headers=headers
    )

    assert met.status_code == 200, met.text
    assert (below.status_code, below.json()["minPurchase"]) == (422, "500.12")
