"""POST /webhooks/payments: signatures, captures, failures, replays, out-of-order events,
late captures, and amount/currency checks.

Setup is committed (a savepoint release inside the test's transaction) so that a
request that fails, and rolls its own work back, does not take the setup with it.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.coupons import repository as coupons_repository
from coursehub.models import (
    CouponUsage,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PaymentStatus,
    User,
)
from coursehub.payments.schemas import PaymentEvent
from coursehub.payments.signature import SIGNATURE_HEADER, sign
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_enrollment,
    make_order,
    make_user,
)
from tests.payments.helpers import (
    WEBHOOK,
    commit_setup,
    deliver,
    enrollments_of,
    event,
    fresh,
    signed,
)


async def snapshot(session: AsyncSession, order: Order) -> tuple[Any, ...]:
    """Everything an event could change about an order: its row, usage and enrollments."""
    row = await fresh(session, order)
    usage = await session.scalar(
        select(func.count()).select_from(CouponUsage).where(CouponUsage.order_id == order.id)
    )
    enrollments = (
        await session.execute(
            select(CourseEnrollment.course_id, CourseEnrollment.status, CourseEnrollment.order_id)
            .where(CourseEnrollment.user_id == order.user_id)
            .order_by(CourseEnrollment.course_id)
        )
    ).all()
    return (
        row.status,
        row.payment_status,
        row.payment_method,
        row.metadata_,
        row.updated_at,
        usage,
        enrollments,
    )


@pytest.fixture
async def pending_order(session: AsyncSession) -> Order:
    buyer = await make_user(session)
    courses = [
        await make_course(session, price="1499.00"),
        await make_course(session, price="499.50"),
    ]
    order = await make_order(session, user=buyer, courses=courses, payment_method="upi")
    await commit_setup(session)
    return order


# --- captures ---------------------------------------------------------------------------


async def test_capture_completes_pays_and_enrolls(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    response = await deliver(client, event(pending_order, payment_id="pay_abc"))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": True,
        "outcome": "captured",
        "orderNumber": pending_order.order_number,
        "status": "completed",
        "paymentStatus": "paid",
    }
    order = await fresh(session, pending_order)
    assert order.status == OrderStatus.completed
    assert order.payment_status == PaymentStatus.paid
    assert order.payment_method == "upi"  # what checkout recorded is kept
    assert order.metadata_ is not None and order.metadata_["paymentId"] == "pay_abc"
    enrollments = await enrollments_of(session, order.user_id)
    assert len(enrollments) == 2
    assert all(e.status == EnrollmentStatus.active for e in enrollments.values())
    assert all(e.order_id == order.id for e in enrollments.values())


async def test_capture_of_a_processing_order_completes_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    order = await make_order(
        session, user=buyer, courses=[await make_course(session)], status=OrderStatus.processing
    )
    await commit_setup(session)

    response = await deliver(client, event(order))

    assert response.json()["outcome"] == "captured"
    assert (await fresh(session, order)).status == OrderStatus.completed


async def test_capture_reactivates_a_revoked_enrollment(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    course = await make_course(session)
    old = await make_order(
        session,
        user=buyer,
        courses=[course],
        status=OrderStatus.refunded,
        payment_status=PaymentStatus.refunded,
    )
    await make_enrollment(
        session, user=buyer, course=course, order=old, status=EnrollmentStatus.revoked, progress=60
    )
    order = await make_order(session, user=buyer, courses=[course])
    await commit_setup(session)

    response = await deliver(client, event(order))

    assert response.status_code == 200
    enrollments = await enrollments_of(session, buyer.id)
    assert len(enrollments) == 1
    enrollment = enrollments[course.id]
    assert enrollment.status == EnrollmentStatus.active
    assert enrollment.order_id == order.id
    assert enrollment.progress == 60


async def test_a_replayed_capture_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    first = await deliver(client, event(pending_order, payment_id="pay_1"))
    assert first.json()["outcome"] == "captured"
    before = await snapshot(session, pending_order)

    replay = await deliver(client, event(pending_order, payment_id="pay_1"))

    assert replay.status_code == 200 and replay.json()["outcome"] == "already_captured"
    assert await snapshot(session, pending_order) == before
    assert (await fresh(session, pending_order)).metadata_["paymentId"] == "pay_1"


async def test_a_second_payment_of_a_paid_order_is_recorded_for_a_refund(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    """The customer paid twice (two payment ids): the order keeps its first payment, and
    the second is flagged refundDue where admins find the money to give back, as a late
    capture is; its replay adds nothing."""
    admin = await make_admin(session)
    await commit_setup(session)
    assert (await deliver(client, event(pending_order, payment_id="pay_1"))).status_code == 200
    status_before = (await fresh(session, pending_order)).status

    second = await deliver(client, event(pending_order, payment_id="pay_2"))
    replayed = await deliver(client, event(pending_order, payment_id="pay_2"))

    assert second.status_code == replayed.status_code == 200
    assert second.json()["outcome"] == replayed.json()["outcome"] == "second_capture_flagged"
    stored = await fresh(session, pending_order)
    assert (stored.status, stored.payment_status) == (status_before, PaymentStatus.paid)
    assert stored.metadata_ is not None
    assert stored.metadata_["paymentId"] == "pay_1"
    assert stored.metadata_["refundDue"] is True
    assert [c["paymentId"] for c in stored.metadata_["lateCaptures"]] == ["pay_2"]
    due = await client.get(
        "/api/v1/admin/orders", params={"refund_due": "true"}, headers=auth_headers(admin)
    )
    assert [o["orderNumber"] for o in due.json()["items"]] == [pending_order.order_number]


async def mark_paid(
    client: httpx.AsyncClient, order: Order, admin: User, reference: str | None = None
) -> None:
    body = {} if reference is None else {"reference": reference}
    response = await client.post(
        f"/api/v1/admin/orders/{order.order_number}/mark-paid",
        json=body,
        headers=auth_headers(admin),
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("reference", [None, "UTR-0042"])
async def test_a_capture_of_an_order_marked_paid_is_recorded_for_a_refund(
    client: httpx.AsyncClient,
    session: AsyncSession,
    pending_order: Order,
    caplog: pytest.LogCaptureFixture,
    reference: str | None,
) -> None:
    """Mark-paid records no paymentId: a capture with any paymentId other than the
    mark-paid's reference may be the customer paying a second time, so it is recorded for
    an operator to review (refundDue), not taken for a replay and lost; its replay adds
    nothing."""
    admin = await make_admin(session)
    await commit_setup(session)
    await mark_paid(client, pending_order, admin, reference)
    marked = await snapshot(session, pending_order)

    with caplog.at_level("WARNING", logger="coursehub.payments"):
        capture = await deliver(client, event(pending_order, payment_id="pay_gw"))
    replayed = await deliver(client, event(pending_order, payment_id="pay_gw"))

    assert capture.status_code == replayed.status_code == 200, capture.text
    assert capture.json()["outcome"] == replayed.json()["outcome"] == "second_capture_flagged"
    stored = await fresh(session, pending_order)
    assert stored.metadata_ is not None
    assert stored.metadata_["refundDue"] is True
    assert [c["paymentId"] for c in stored.metadata_["lateCaptures"]] == ["pay_gw"]
    assert "paymentId" not in stored.metadata_
    # The order keeps the admin's payment (status, method, enrollments …): only the two
    # keys above were added to its metadata.
    after = await snapshot(session, pending_order)
    metadata_index = 3
    kept = {k: v for k, v in stored.metadata_.items() if k not in ("lateCaptures", "refundDue")}
    assert kept == marked[metadata_index]
    assert after[:metadata_index] == marked[:metadata_index]
    assert after[metadata_index + 2 :] == marked[metadata_index + 2 :]  # not updatedAt
    assert any(
        "pay_gw" in record.getMessage()
        and "marked paid by admin " + admin.id in record.getMessage()
        and (reference or "none") in record.getMessage()
        for record in caplog.records
    )
    due = await client.get(
        "/api/v1/admin/orders", params={"refund_due": "true"}, headers=auth_headers(admin)
    )
    assert [o["orderNumber"] for o in due.json()["items"]] == [pending_order.order_number]


async def test_a_capture_of_the_payment_an_admin_marked_paid_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    """The admin recorded the gateway's payment id as the reference: that capture is the
    payment the order was marked paid with."""
    admin = await make_admin(session)
    await commit_setup(session)
    await mark_paid(client, pending_order, admin, "pay_known")
    before = await snapshot(session, pending_order)

    response = await deliver(client, event(pending_order, payment_id="pay_known"))

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "already_captured"
    assert await snapshot(session, pending_order) == before


async def test_a_capture_of_an_order_paid_under_node_without_a_payment_id_is_a_replay(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Paid under the Node app (metadata with no `via` and no paymentId): nothing to tell a
    second payment by."""
    buyer = await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
    )
    order.metadata_ = {"paidAt": "2024-03-01T10:00:00Z", "gateway": "razorpay"}
    await commit_setup(session)
    before = await snapshot(session, order)

    response = await deliver(client, event(order, payment_id="pay_again"))

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "already_captured"
    assert await snapshot(session, order) == before


async def test_capture_of_a_refunded_order_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    course = await make_course(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[course],
        status=OrderStatus.refunded,
        payment_status=PaymentStatus.refunded,
    )
    await make_enrollment(
        session, user=buyer, course=course, order=order, status=EnrollmentStatus.revoked
    )
    await commit_setup(session)
    before = await snapshot(session, order)

    response = await deliver(client, event(order))

    assert response.json()["outcome"] == "already_captured"
    assert await snapshot(session, order) == before


async def test_capture_without_a_method_records_online(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    order = await make_order(session, user=buyer, courses=[await make_course(session)])
    await commit_setup(session)

    await deliver(client, event(order))

    assert (await fresh(session, order)).payment_method == "online"


# --- failures ---------------------------------------------------------------------------


async def test_failure_cancels_and_gives_the_coupon_use_back(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = await make_user(session)
    coupon = await make_coupon(session, code="FAILSAFE", value="10", max_uses=1)
    course = await make_course(session, price="1000.00")
    order = await make_order(
        session, user=buyer, courses=[course], coupon=coupon, discount=Decimal("100.00")
    )
    await commit_setup(session)

    response = await deliver(
        client, event(order, "payment.failed", payment_id="pay_x", reason="card declined")
    )

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "failed"
    assert response.json()["status"] == "cancelled"
    stored = await fresh(session, order)
    assert stored.status == OrderStatus.cancelled
    assert stored.payment_status == PaymentStatus.failed
    assert stored.metadata_ is not None
    assert stored.metadata_["paymentFailure"]["paymentId"] == "pay_x"
    assert stored.metadata_["paymentFailure"]["reason"] == "card declined"
    assert "releasedCoupon" not in stored.metadata_
    # The usage row stays with the cancelled order (its history); it no longer counts.
    usages = (
        await session.execute(
            select(CouponUsage.order_id, CouponUsage.discount).where(
                CouponUsage.coupon_id == coupon.id
            )
        )
    ).all()
    assert usages == [(order.id, Decimal("100.00"))]
    assert await coupons_repository.count_uses(session, coupon.id) == 0
    assert await enrollments_of(session, buyer.id) == {}
    # Its only use is free again, and the same buyer may take it.
    again = await client.post(
        "/api/v1/orders",
        json={"courseIds": [course.id], "couponCode": "FAILSAFE"},
        headers=auth_headers(buyer),
    )
    assert again.status_code == 201, again.text
    assert again.json()["coupon"] == {"code": "FAILSAFE", "discount": "100.00"}


async def test_a_failure_with_a_long_reason_is_applied_with_the_reasons_start(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    """However the gateway words a failure, it must cancel the order: refused, the order
    would stay pending until it expired."""
    reason = "issuer declined: " + "x" * 2000

    response = await deliver(
        client, event(pending_order, "payment.failed", payment_id="pay_long", reason=reason)
    )

    assert response.status_code == 200, response.text
    stored = await fresh(session, pending_order)
    assert stored.status == OrderStatus.cancelled
    assert stored.metadata_ is not None
    assert stored.metadata_["paymentFailure"]["reason"] == reason[:500]


@pytest.mark.parametrize(
    ("reason", "stored_reason"),
    [
        # A JS gateway cut the text mid-emoji, leaving half a UTF-16 surrogate pair.
        ("card declined \ud83d", "card declined \ufffd"),
        ("\ud800", "\ufffd"),
        ("card\u0000 declined\u0000", "card declined"),
        ("\u0000" + "x" * 600, "x" * 500),
    ],
)
async def test_a_failure_with_a_reason_postgres_cannot_store_is_applied_with_it_cleaned(
    client: httpx.AsyncClient,
    session: AsyncSession,
    pending_order: Order,
    reason: str,
    stored_reason: str,
) -> None:
    """JSONB takes neither a lone surrogate nor NUL: refused (a 500 or a 422), the failure
    would never be applied, and the gateway would retry it forever."""
    body = json.dumps(event(pending_order, "payment.failed", reason=reason)).encode()
    assert b"\\u" in body  # sent as JSON escapes, as a gateway sends them

    response = await deliver(client, body)

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "failed"
    stored = await fresh(session, pending_order)
    assert stored.status == OrderStatus.cancelled
    assert stored.metadata_ is not None
    assert stored.metadata_["paymentFailure"]["reason"] == stored_reason


def failure_with_raw_reason(order: Order, reason_json: str) -> bytes:
    """A failure whose `reason` is the given JSON text, as the gateway sent it."""
    payload = json.dumps(event(order, "payment.failed", reason="REASON"))
    return payload.replace('"REASON"', reason_json).encode()


@pytest.mark.parametrize(
    ("reason_json", "stored_reason"),
    [
        ("402", "402"),
        ("1.50", "1.50"),
        ("true", "true"),
        (
            '{"code":"BAD_REQUEST_ERROR","step":"auth"}',
            '{"code": "BAD_REQUEST_ERROR", "step": "auth"}',
        ),
        ('["declined","by issuer"]', '["declined", "by issuer"]'),
        ('{"description":"x\\u0000y\\ud800"}', '{"description": "x\\u0000y\ufffd"}'),
    ],
)
async def test_a_failure_whose_reason_is_not_text_is_applied_with_its_json_text(
    client: httpx.AsyncClient,
    session: AsyncSession,
    pending_order: Order,
    reason_json: str,
    stored_reason: str,
) -> None:
    """A failure must be applied whatever the gateway's wording, even a number or an
    object where the store expects text."""
    response = await deliver(client, failure_with_raw_reason(pending_order, reason_json))

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "failed"
    stored = await fresh(session, pending_order)
    assert stored.status == OrderStatus.cancelled
    assert stored.metadata_ is not None
    assert stored.metadata_["paymentFailure"]["reason"] == stored_reason


async def test_a_failure_after_the_capture_is_ignored_and_logged(
    client: httpx.AsyncClient,
    session: AsyncSession,
    pending_order: Order,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await deliver(client, event(pending_order, payment_id="pay_ok"))
    before = await snapshot(session, pending_order)

    with caplog.at_level("WARNING", logger="coursehub.payments"):
        response = await deliver(
            client, event(pending_order, "payment.failed", payment_id="pay_old")
        )

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored_after_capture"
    assert await snapshot(session, pending_order) == before
    assert any(
        "pay_old" in record.getMessage() and pending_order.order_number in record.getMessage()
        for record in caplog.records
    )


async def test_a_replayed_failure_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    await deliver(client, event(pending_order, "payment.failed"))
    before = await snapshot(session, pending_order)

    replay = await deliver(client, event(pending_order, "payment.failed"))

    assert replay.json()["outcome"] == "already_closed"
    assert await snapshot(session, pending_order) == before


# --- late captures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payment_status"),
    [
        (OrderStatus.cancelled, PaymentStatus.failed),  # an earlier attempt failed
        (OrderStatus.cancelled, PaymentStatus.pending),  # cancelled by the buyer, or expired
    ],
)
async def test_a_capture_after_cancellation_is_flagged_for_refund_not_completed(
    client: httpx.AsyncClient,
    session: AsyncSession,
    status: OrderStatus,
    payment_status: PaymentStatus,
) -> None:
    buyer = await make_user(session)
    order = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=status,
        payment_status=payment_status,
    )
    await commit_setup(session)

    response = await deliver(client, event(order, payment_id="pay_late"))
    replay = await deliver(client, event(order, payment_id="pay_late"))

    assert response.status_code == 200
    assert response.json()["outcome"] == "late_capture_flagged"
    assert replay.json()["outcome"] == "late_capture_flagged"
    stored = await fresh(session, order)
    assert stored.status == status
    assert stored.payment_status == payment_status
    assert stored.metadata_ is not None
    assert stored.metadata_["refundDue"] is True
    assert [c["paymentId"] for c in stored.metadata_["lateCaptures"]] == ["pay_late"]
    assert stored.metadata_["lateCaptures"][0]["amount"] == "499.00"
    assert await enrollments_of(session, buyer.id) == {}


# --- amount and currency ---------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1998.49", "1998.51", "1998.501", "0", "19985.00"])
async def test_an_amount_other_than_the_orders_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order, amount: str
) -> None:
    before = await snapshot(session, pending_order)

    response = await deliver(client, event(pending_order, amount=amount))

    assert response.status_code == 422
    assert response.json()["code"] == "payment_amount_mismatch"
    assert response.json()["expectedAmount"] == "1998.50"
    assert await snapshot(session, pending_order) == before


async def test_a_failure_with_the_wrong_amount_is_refused_too(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    before = await snapshot(session, pending_order)

    response = await deliver(client, event(pending_order, "payment.failed", amount="1.00"))

    assert response.status_code == 422
    assert await snapshot(session, pending_order) == before


async def test_the_amount_is_compared_as_a_decimal_not_as_text(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    # A JSON number with trailing zeros is the same amount (read as Decimal, never float).
    body = (
        b'{"event":"payment.captured","orderNumber":"'
        + pending_order.order_number.encode()
        + b'","paymentId":"pay_n","amount":1998.500,"currency":"inr"}'
    )

    response = await deliver(client, body)

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "captured"


async def test_another_currency_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    before = await snapshot(session, pending_order)

    response = await deliver(client, event(pending_order, currency="USD"))

    assert response.status_code == 422
    assert response.json()["code"] == "payment_currency_mismatch"
    assert await snapshot(session, pending_order) == before


# --- signatures and malformed events ---------------------------------------------------


async def test_a_missing_signature_is_401(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    before = await snapshot(session, pending_order)

    response = await client.post(WEBHOOK, json=event(pending_order))

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_signature"
    assert await snapshot(session, pending_order) == before


@pytest.mark.parametrize("how", ["wrong_secret", "tampered_body", "garbage", "empty"])
async def test_a_wrong_signature_is_401_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order, how: str
) -> None:
    before = await snapshot(session, pending_order)
    body = json.dumps(event(pending_order)).encode()
    signature: bytes = {
        "wrong_secret": sign(body, "not-the-secret").encode(),
        # Signed for another amount than the one delivered: the signature covers the bytes.
        "tampered_body": sign(body.replace(b"1998.50", b"1.00"), TEST_WEBHOOK_SECRET).encode(),
        "garbage": "zz-not-hex-\u00e9".encode("latin-1"),
        "empty": b"",
    }[how]

    response = await client.post(
        WEBHOOK,
        content=body,
        headers={b"Content-Type": b"application/json", SIGNATURE_HEADER.encode(): signature},
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert await snapshot(session, pending_order) == before


async def test_the_signature_is_case_insensitive_hex(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    body, headers = signed(event(pending_order))
    headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].upper()

    response = await client.post(WEBHOOK, content=body, headers=headers)

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[]", "body"),
        (
            b'{"event":"payment.refunded","orderNumber":"X","paymentId":"p","amount":"1",'
            b'"currency":"INR"}',
            "event",
        ),
        (
            b'{"event":"payment.captured","paymentId":"p","amount":"1","currency":"INR"}',
            "orderNumber",
        ),
        (
            b'{"event":"payment.captured","orderNumber":"X","paymentId":"p","amount":"abc",'
            b'"currency":"INR"}',
            "amount",
        ),
        (
            b'{"event":"payment.captured","orderNumber":"X","paymentId":"p","amount":"-1",'
            b'"currency":"INR"}',
            "amount",
        ),
        (
            b'{"event":"payment.captured","orderNumber":"X","paymentId":"p","amount":"1",'
            b'"currency":"RUPEES"}',
            "currency",
        ),
    ],
)
async def test_a_signed_but_malformed_event_is_422(
    client: httpx.AsyncClient, body: bytes, field: str
) -> None:
    response = await deliver(client, body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_payment_event"
    if field != "body":
        assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
    ],
    ids=["array", "object"],
)
async def test_a_signed_body_nested_too_deeply_is_422_not_500(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await deliver(client, body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_payment_event"
    assert "nested too deeply" in response.json()["detail"]


async def test_a_reason_nested_about_as_deep_as_json_is_read_is_never_a_500(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    """Near the recursion limit, a reason the JSON reader took may be too deep to write
    back as text: the failure is applied all the same (or, deeper, refused as a 422)."""
    statuses = Counter[int]()
    # Every depth up to past the limit: where exactly it falls depends on the stack the
    # request runs in.
    for depth in range(800, 1001):
        nested = "[" * depth + "]" * depth
        response = await deliver(client, failure_with_raw_reason(pending_order, nested))
        statuses[response.status_code] += 1

    assert statuses.keys() == {200, 422}, statuses
    assert (await fresh(session, pending_order)).status == OrderStatus.cancelled


def test_a_reason_too_deep_to_write_as_text_is_still_a_reason() -> None:
    too_deep: list[Any] = []
    for _ in range(100_000):
        too_deep = [too_deep]

    parsed = PaymentEvent.model_validate(
        {
            "event": "payment.failed",
            "orderNumber": "CH-1",
            "paymentId": "pay_1",
            "amount": "1.00",
            "currency": "INR",
            "reason": too_deep,
        }
    )

    assert parsed.reason == "(a reason nested too deeply to show)"


async def test_an_event_for_an_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    response = await deliver(
        client,
        {
            "event": "payment.captured",
            "orderNumber": "CH-NOPE",
            "paymentId": "p",
            "amount": "1.00",
            "currency": "INR",
        },
    )

    assert response.status_code == 404
    assert response.json()["code"] == "order_not_found"


async def test_unknown_extra_fields_from_the_gateway_are_ignored(
    client: httpx.AsyncClient, pending_order: Order
) -> None:
    response = await deliver(client, event(pending_order, gatewayVersion="2024-01", method="upi"))

    assert response.status_code == 200
    assert response.json()["outcome"] == "captured"


def non_canonical(payload: dict[str, Any]) -> bytes:
    """The event as a gateway might lay it out: keys in another order, spaces, a newline."""
    parts = [f'  "{key}" :  {json.dumps(value)}' for key, value in reversed(payload.items())]
    return ("{\n" + " ,\n".join(parts) + "\n}\n").encode()


async def test_a_non_canonical_body_signed_over_its_raw_bytes_is_accepted(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    payload = event(pending_order, payment_id="pay_raw")
    body = non_canonical(payload)
    assert body != json.dumps(payload).encode()
    assert json.loads(body) == payload  # the same event

    response = await deliver(client, body)  # signed over exactly these bytes

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "captured"
    order = await fresh(session, pending_order)
    assert order.status == OrderStatus.completed
    assert order.metadata_ is not None and order.metadata_["paymentId"] == "pay_raw"


async def test_a_body_signed_over_its_canonical_form_instead_of_its_bytes_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, pending_order: Order
) -> None:
    """The signature covers the bytes as sent: the store must not re-serialise the event
    before checking it, or the gateway's signature would not be what is verified."""
    before = await snapshot(session, pending_order)
    payload = event(pending_order)
    body = non_canonical(payload)
    for canonical in (
        json.dumps(payload).encode(),
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode(),
    ):
        response = await client.post(
            WEBHOOK,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(canonical, TEST_WEBHOOK_SECRET),
            },
        )

        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_signature"
    assert await snapshot(session, pending_order) == before
