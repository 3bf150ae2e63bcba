"""Webhook deliveries racing each other, with real commits from separate connections.

The order row lock (`SELECT … FOR UPDATE`) must make concurrent duplicates and
conflicting events run one after the other: exactly one of them has an effect.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from coursehub.core.database import Database
from coursehub.core.models import utcnow
from coursehub.models import (
    CouponUsage,
    CourseEnrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PaymentStatus,
    User,
)
from coursehub.orders.expiry import expire_stale_orders
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_order,
    make_user,
)
from tests.orders.invariants import assert_order_invariants
from tests.payments.helpers import deliver, event
from tests.queries import waiting_for_locks

pytestmark = pytest.mark.committing

DUPLICATES = 12


async def committed_order(database: Database, *, with_coupon: bool = False) -> Order:
    async with database.transaction() as session:
        buyer = await make_user(session)
        courses = [
            await make_course(session, price="800.00"),
            await make_course(session, price="200.00"),
        ]
        coupon = await make_coupon(session, value="10") if with_coupon else None
        order = await make_order(
            session,
            user=buyer,
            courses=courses,
            coupon=coupon,
            discount=Decimal("100.00") if coupon else Decimal("0"),
        )
    return order


async def state(database: Database, order: Order) -> tuple[Order, list[CourseEnrollment], int]:
    async with database.transaction() as session:
        stored = (await session.execute(select(Order).where(Order.id == order.id))).scalar_one()
        enrollments = list(
            (
                await session.execute(
                    select(CourseEnrollment).where(CourseEnrollment.user_id == order.user_id)
                )
            ).scalars()
        )
        usages = await session.scalar(
            select(func.count()).select_from(CouponUsage).where(CouponUsage.order_id == order.id)
        )
    return stored, enrollments, int(usages or 0)


async def test_concurrent_duplicate_captures_have_exactly_one_effect(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db)

    responses = await asyncio.gather(
        *(deliver(committed_client, event(order, payment_id="pay_dup")) for _ in range(DUPLICATES))
    )

    assert [r.status_code for r in responses] == [200] * DUPLICATES
    outcomes = Counter(r.json()["outcome"] for r in responses)
    assert outcomes == {"captured": 1, "already_captured": DUPLICATES - 1}
    stored, enrollments, _ = await state(committed_db, order)
    assert stored.status == OrderStatus.completed
    assert stored.payment_status == PaymentStatus.paid
    assert len(enrollments) == 2
    assert {e.order_id for e in enrollments} == {order.id}


async def test_a_capture_racing_failures_leaves_one_consistent_outcome(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db, with_coupon=True)
    deliveries = [
        deliver(committed_client, event(order, "payment.failed", payment_id=f"pay_f{n}"))
        if n % 2
        else deliver(committed_client, event(order, payment_id="pay_c"))
        for n in range(DUPLICATES)
    ]

    responses = await asyncio.gather(*deliveries)

    assert [r.status_code for r in responses] == [200] * DUPLICATES
    outcomes = Counter(r.json()["outcome"] for r in responses)
    stored, enrollments, usages = await state(committed_db, order)
    if stored.status == OrderStatus.completed:
        # The capture came first: every failure after it was ignored.
        assert outcomes == {
            "captured": 1,
            "already_captured": DUPLICATES // 2 - 1,
            "ignored_after_capture": DUPLICATES // 2,
        }
        assert stored.payment_status == PaymentStatus.paid
        assert len(enrollments) == 2 and usages == 1
    else:
        # A failure came first: the captures after it were flagged for refund, not applied.
        assert outcomes == {
            "failed": 1,
            "already_closed": DUPLICATES // 2 - 1,
            "late_capture_flagged": DUPLICATES // 2,
        }
        assert stored.status == OrderStatus.cancelled
        assert stored.payment_status == PaymentStatus.failed
        assert stored.metadata_ is not None and stored.metadata_["refundDue"] is True
        assert len(stored.metadata_["lateCaptures"]) == 1
        # The usage row stays with the cancelled order; being cancelled, it no longer counts.
        assert enrollments == [] and usages == 1


async def test_mark_paid_racing_the_gateways_capture_applies_once(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db)
    async with committed_db.transaction() as session:
        admin: User = await make_admin(session)
    headers = auth_headers(admin)

    capture, marked = await asyncio.gather(
        deliver(committed_client, event(order, payment_id="pay_race")),
        committed_client.post(
            f"/api/v1/admin/orders/{order.order_number}/mark-paid",
            json={"reference": "UTR-RACE"},
            headers=headers,
        ),
    )

    assert capture.status_code == 200
    stored, enrollments, _ = await state(committed_db, order)
    assert stored.metadata_ is not None
    if capture.json()["outcome"] == "captured":
        assert marked.status_code == 409 and marked.json()["code"] == "order_already_paid"
        assert stored.metadata_["paymentId"] == "pay_race"
        assert "refundDue" not in stored.metadata_
    else:
        # Mark-paid came first, with another reference: the gateway's capture may be a
        # second payment, recorded for an operator to review, the order left as marked.
        assert capture.json()["outcome"] == "second_capture_flagged"
        assert marked.status_code == 200
        assert stored.metadata_["via"] == "admin"
        assert stored.metadata_["refundDue"] is True
        assert [c["paymentId"] for c in stored.metadata_["lateCaptures"]] == ["pay_race"]
    assert stored.status == OrderStatus.completed
    assert stored.payment_status == PaymentStatus.paid
    assert [e.status for e in enrollments] == [EnrollmentStatus.active] * 2


async def test_concurrent_refunds_revoke_once(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    order = await committed_order(committed_db)
    async with committed_db.transaction() as session:
        admin: User = await make_admin(session)
    headers = auth_headers(admin)
    paid = await deliver(committed_client, event(order))
    assert paid.json()["outcome"] == "captured"

    responses = await asyncio.gather(
        *(
            committed_client.post(
                f"/api/v1/admin/orders/{order.order_number}/refund",
                json={"reason": f"attempt {n}"},
                headers=headers,
            )
            for n in range(6)
        )
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 5}
    stored, enrollments, _ = await state(committed_db, order)
    assert stored.status == OrderStatus.refunded
    assert stored.payment_status == PaymentStatus.refunded
    winner = next(r for r in responses if r.status_code == 200)
    assert stored.metadata_ is not None
    assert stored.metadata_["refund"]["reason"] == winner.json()["metadata"]["refund"]["reason"]
    assert [e.status for e in enrollments] == [EnrollmentStatus.revoked] * 2


# --- a capture racing the order's cancellation or its expiry -----------------------------

RACES = 4


async def check_invariants(database: Database) -> None:
    async with database.transaction() as session:
        await assert_order_invariants(session)


def assert_cancelled_with_the_capture_flagged(
    stored: Order, enrollments: list[CourseEnrollment], reason: str, payment_id: str
) -> None:
    assert stored.status == OrderStatus.cancelled
    assert stored.payment_status != PaymentStatus.paid
    assert stored.metadata_ is not None
    assert stored.metadata_["cancelReason"] == reason
    assert stored.metadata_["refundDue"] is True
    assert [c["paymentId"] for c in stored.metadata_["lateCaptures"]] == [payment_id]
    assert enrollments == []


def assert_completed_with_enrollments(stored: Order, enrollments: list[CourseEnrollment]) -> None:
    assert stored.status == OrderStatus.completed
    assert stored.payment_status == PaymentStatus.paid
    assert stored.metadata_ is not None and "refundDue" not in stored.metadata_
    assert sorted(e.status for e in enrollments) == [EnrollmentStatus.active] * 2
    assert all(e.order_id == stored.id for e in enrollments)


Canceller = Callable[[Order], Awaitable[httpx.Response]]


async def race_captures_against_cancels(
    committed_db: Database,
    committed_client: httpx.AsyncClient,
    cancel_of: Callable[[dict[str, dict[str, str]]], Canceller],
    *,
    cancel_reason: str,
    refused_code: str,
) -> None:
    """Both requests are in flight at once, queued on the order's row lock (held here until
    they are). PostgreSQL grants a row lock in the order it was asked for, so which one
    wins is set by which queued first: alternately the capture and the cancel, so both
    outcomes are exercised. `cancel_of` gets each buyer's headers by user id."""
    orders = [await committed_order(committed_db, with_coupon=True) for _ in range(RACES)]
    async with committed_db.transaction() as session:
        owners = select(User).where(User.id.in_([o.user_id for o in orders]))
        buyers = {user.id: auth_headers(user) for user in (await session.scalars(owners))}
    cancel = cancel_of(buyers)

    def capture(order: Order) -> Awaitable[httpx.Response]:
        return deliver(committed_client, event(order, payment_id=f"pay_{order.order_number}"))

    capture_first = [n % 2 == 0 for n in range(RACES)]
    pairs: list[tuple[asyncio.Task[httpx.Response], asyncio.Task[httpx.Response]]] = []
    async with committed_db.transaction() as blocker:
        await blocker.execute(
            select(Order.id).where(Order.id.in_([o.id for o in orders])).with_for_update()
        )
        for order, first in zip(orders, capture_first, strict=True):
            racers = (capture, cancel) if first else (cancel, capture)
            tasks = []
            for racer in racers:
                tasks.append(asyncio.ensure_future(racer(order)))
                await waiting_for_locks(committed_db, 2 * len(pairs) + len(tasks), what="requests")
            pairs.append((tasks[0], tasks[1]) if first else (tasks[1], tasks[0]))
    results = [(await captured, await cancelled) for captured, cancelled in pairs]

    for order, first, (captured, cancelled) in zip(orders, capture_first, results, strict=True):
        stored, enrollments, usages = await state(committed_db, order)
        assert captured.status_code == 200, captured.text
        assert usages == 1  # the usage row stays either way
        if first:
            assert captured.json()["outcome"] == "captured"
            assert cancelled.status_code == 409, cancelled.text
            assert cancelled.json()["code"] == refused_code
            assert_completed_with_enrollments(stored, enrollments)
        else:
            assert cancelled.status_code == 200, cancelled.text
            assert captured.json()["outcome"] == "late_capture_flagged"
            assert_cancelled_with_the_capture_flagged(
                stored, enrollments, cancel_reason, f"pay_{order.order_number}"
            )
    await check_invariants(committed_db)


async def test_a_capture_racing_the_buyers_cancel_has_exactly_one_winner(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    def buyers_cancel(buyers: dict[str, dict[str, str]]) -> Canceller:
        def cancel(order: Order) -> Awaitable[httpx.Response]:
            return committed_client.post(
                f"/api/v1/orders/{order.order_number}/cancel", headers=buyers[order.user_id]
            )

        return cancel

    await race_captures_against_cancels(
        committed_db,
        committed_client,
        buyers_cancel,
        cancel_reason="cancelled_by_buyer",
        refused_code="order_not_pending",
    )


async def test_a_capture_racing_an_admins_cancel_has_exactly_one_winner(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    async with committed_db.transaction() as session:
        admin = auth_headers(await make_admin(session))

    def admins_cancel(_: dict[str, dict[str, str]]) -> Canceller:
        def cancel(order: Order) -> Awaitable[httpx.Response]:
            return committed_client.post(
                f"/api/v1/admin/orders/{order.order_number}/cancel",
                json={"reason": "customer asked by phone"},
                headers=admin,
            )

        return cancel

    await race_captures_against_cancels(
        committed_db,
        committed_client,
        admins_cancel,
        cancel_reason="cancelled_by_admin",
        refused_code="order_not_cancellable",
    )


async def test_a_capture_racing_expiry_has_exactly_one_winner(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    """Expiry runs while captures are in flight. Half of the captures are made to hold their
    order first (queued on its lock, held here): expiry must skip those (SKIP LOCKED),
    not wait for them nor cancel them, and they complete. The other half race expiry
    freely: whichever way each goes, the order ends consistent."""
    orders = []
    async with committed_db.transaction() as session:
        for _ in range(RACES):
            buyer = await make_user(session)
            courses = [
                await make_course(session, price="800.00"),
                await make_course(session, price="200.00"),
            ]
            orders.append(
                await make_order(
                    session, user=buyer, courses=courses, created_at=utcnow() - timedelta(hours=2)
                )
            )
    held, free = orders[::2], orders[1::2]

    def capture(order: Order) -> Awaitable[httpx.Response]:
        return deliver(committed_client, event(order, payment_id=f"pay_{order.order_number}"))

    async with committed_db.transaction() as blocker:
        await blocker.execute(
            select(Order.id).where(Order.id.in_([o.id for o in held])).with_for_update()
        )
        held_captures = [asyncio.ensure_future(capture(o)) for o in held]
        await waiting_for_locks(committed_db, len(held), what="requests")
        free_captures = asyncio.gather(*(capture(o) for o in free))
        expired = await expire_stale_orders(committed_db, ttl=timedelta(minutes=30))
        free_responses = await free_captures
    captures = {o.id: await task for o, task in zip(held, held_captures, strict=True)}
    captures |= dict(zip([o.id for o in free], free_responses, strict=True))

    assert not {o.order_number for o in held} & set(expired)
    for order in orders:
        captured = captures[order.id]
        assert captured.status_code == 200, captured.text
        stored, enrollments, _ = await state(committed_db, order)
        if order.order_number in expired:
            assert captured.json()["outcome"] == "late_capture_flagged"
            assert_cancelled_with_the_capture_flagged(
                stored, enrollments, "expired", f"pay_{order.order_number}"
            )
        else:
            assert captured.json()["outcome"] == "captured"
            assert_completed_with_enrollments(stored, enrollments)
    await check_invariants(committed_db)
