"""A limited coupon's uses claimed at checkout under its claim lock (coupons/repository.py,
"claiming a use"): shared far from its limit (checkouts of the coupon do not queue),
exclusive for its last K uses and for admins' changes, with an exact count.

K is the server's bound on transactions in progress, written out here rather than taken
from the code under test."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.core.locks import COUPON_CLAIM_LOCK_CLASS
from coursehub.core.models import utcnow
from coursehub.coupons import repository as coupons_repository
from coursehub.coupons.errors import CouponUsedUp
from coursehub.models import Coupon, OrderStatus, PaymentStatus, User
from coursehub.orders.checkout import place_order
from tests.factories import (
    auth_headers,
    make_admin,
    make_coupon,
    make_course,
    make_order,
    make_user,
)
from tests.orders.invariants import assert_order_invariants, count_rows
from tests.queries import StatementLog, captured, hold_coupon_claims, waiting_for_locks

URL = "/api/v1/orders"
# Long enough for a checkout that does not wait to finish on a loaded machine; a checkout
# that waits for the lock held meanwhile never finishes within it.
NOT_QUEUED_WITHIN = 15.0
SHARED_LOCK = "pg_advisory_xact_lock_shared("


def claim_locks(log: StatementLog) -> list[str]:
    """The coupon claim locks a request took, in order: "shared" or "exclusive" (not the
    buyer's own checkout lock, which is another class)."""
    taken = []
    for statement, parameters in log.executed:
        if COUPON_CLAIM_LOCK_CLASS in tuple(parameters or ()):
            taken.append("shared" if SHARED_LOCK in statement else "exclusive")
    return taken


def savepoints(log: StatementLog) -> list[str]:
    return [s for s in log.statements if s.startswith(("SAVEPOINT", "ROLLBACK TO SAVEPOINT"))]


async def in_progress_bound(session: AsyncSession) -> int:
    statement = text(
        "SELECT sum(setting::int) FROM pg_settings WHERE name IN ('max_connections',"
        " 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions')"
    )
    return int(await session.scalar(statement) or 0)


async def add_usages(
    session: AsyncSession, coupon: Coupon, count: int, *, status: OrderStatus
) -> None:
    """`count` earlier orders of one earlier buyer with the coupon, in `status`."""
    earlier = await make_user(session)
    course = await make_course(session, price="1000.00")
    refunded = status == OrderStatus.refunded
    for _ in range(count):
        await make_order(
            session,
            user=earlier,
            courses=[course],
            coupon=coupon,
            discount="100.00",
            status=status,
            payment_status=PaymentStatus.refunded if refunded else PaymentStatus.pending,
        )


@dataclass(frozen=True)
class LimitedCoupon:
    bound: int  # K
    coupon_id: str
    headers: dict[str, str]  # its buyer's
    body: dict[str, Any]  # that buyer's checkout of one course with the coupon


async def a_buyer_and_a_limited_coupon(
    database: Database, *, code: str, above_bound: int, cancelled: int = 0
) -> LimitedCoupon:
    """A buyer, a course, and a coupon limited to K + `above_bound` uses with `cancelled`
    usages of cancelled orders (none counts), all committed."""
    async with database.transaction() as session:
        bound = await in_progress_bound(session)
        buyer = await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code=code, value="10", max_uses=bound + above_bound)
        if cancelled:
            await add_usages(session, coupon, cancelled, status=OrderStatus.cancelled)
        body = {"courseIds": [course.id], "couponCode": code}
        return LimitedCoupon(bound, coupon.id, auth_headers(buyer), body)


async def test_checkouts_far_from_a_coupons_limit_do_not_queue_on_it(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    setup = await a_buyer_and_a_limited_coupon(committed_db, code="LAUNCH", above_bound=50)
    coupon_id, headers, body = setup.coupon_id, setup.headers, setup.body

    async with committed_db.transaction() as holder:
        await hold_coupon_claims(holder, coupon_id, exclusive=False)  # a claim in progress
        response = await asyncio.wait_for(
            committed_client.post(URL, json=body, headers=headers), NOT_QUEUED_WITHIN
        )
        assert response.status_code == 201, response.text
        assert response.json()["coupon"]["code"] == "LAUNCH"

    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == 1


async def test_a_shared_claim_counts_the_uses_committed_while_it_waited(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """An exclusive holder uses the coupon up (K + 5 uses) while a checkout waits for the
    lock, having read the coupon with none. The checkout counts after it has the lock,
    sees them all and is refused: a count taken before the lock, or in the lock's own
    statement (whose snapshot precedes the wait), would have sold one more."""
    setup = await a_buyer_and_a_limited_coupon(committed_db, code="RUSH", above_bound=5)
    bound, coupon_id, headers, body = setup.bound, setup.coupon_id, setup.headers, setup.body

    async with committed_db.transaction() as holder:
        await hold_coupon_claims(holder, coupon_id, exclusive=True)
        checkout = asyncio.create_task(committed_client.post(URL, json=body, headers=headers))
        await waiting_for_locks(committed_db, 1, what="checkouts")
        held = await holder.get(Coupon, coupon_id)
        assert held is not None
        await add_usages(holder, held, bound + 5, status=OrderStatus.pending)
    response = await checkout

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "coupon_used_up"
    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == bound + 5


@pytest.mark.parametrize(("cancelled", "shared"), [(3, True), (4, False)])
async def test_a_shared_claim_needs_room_for_every_transaction_in_progress(
    committed_client: httpx.AsyncClient, committed_db: Database, cancelled: int, shared: bool
) -> None:
    """maxUses K + 3. With 3 usages (of cancelled orders: none counts, but the index-only
    count cannot tell) 3 + K <= maxUses and the claim is shared; with 4 it is not: the
    checkout gives the shared lock back and takes the exclusive one, and the process
    remembers the coupon is near its limit, so the next checkout of it goes straight to
    the exclusive lock. Both buyers get the coupon: the exact count finds one use at most."""
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        first, second = await make_user(session), await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="EDGE", value="10", max_uses=bound + 3)
        await add_usages(session, coupon, cancelled, status=OrderStatus.cancelled)
        body = {"courseIds": [course.id], "couponCode": "EDGE"}
        buyers = [auth_headers(first), auth_headers(second)]

    logs = []
    for headers in buyers:
        with captured(committed_db.engine, keep_savepoints=True) as log:
            response = await committed_client.post(URL, json=body, headers=headers)
        assert response.status_code == 201, response.text
        logs.append(log)

    first_log, second_log = logs
    if shared:
        assert claim_locks(first_log) == ["shared"]
        assert len(savepoints(first_log)) == 1  # taken, kept
        # The first one's use makes 4 usages: the second is past the edge.
        assert claim_locks(second_log) == ["shared", "exclusive"]
    else:
        assert claim_locks(first_log) == ["shared", "exclusive"]
        assert len(savepoints(first_log)) == 2  # taken, rolled back to
        # Remembered near its limit: straight to the exclusive lock.
        assert claim_locks(second_log) == ["exclusive"]
        assert savepoints(second_log) == []


@pytest.mark.parametrize(
    ("code", "above_bound", "cancelled", "held_exclusive"),
    [("LAUNCH2", 50, 0, True), ("NEARLY", 2, 3, False)],
    ids=["a shared claim waits for an exclusive one", "one of the last uses waits for shared"],
)
async def test_a_claim_waits_for_the_claim_lock_held_against_it(
    committed_client: httpx.AsyncClient,
    committed_db: Database,
    code: str,
    above_bound: int,
    cancelled: int,
    held_exclusive: bool,
) -> None:
    """Far from its limit (K + 50) a checkout's shared claim waits for an exclusive claim in
    progress; near it (K + 2 with three usages of cancelled orders) the checkout's
    exclusive claim waits for a shared one. Each goes on once the holder has committed."""
    setup = await a_buyer_and_a_limited_coupon(
        committed_db, code=code, above_bound=above_bound, cancelled=cancelled
    )
    coupon_id, headers, body = setup.coupon_id, setup.headers, setup.body

    async with committed_db.transaction() as holder:
        await hold_coupon_claims(holder, coupon_id, exclusive=held_exclusive)
        checkout = asyncio.create_task(committed_client.post(URL, json=body, headers=headers))
        await waiting_for_locks(committed_db, 1, what="checkouts")
        assert not checkout.done()
    response = await checkout
    assert response.status_code == 201, response.text
    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == 1


@pytest.mark.parametrize(
    ("change", "status", "outcome"),
    [
        ({"maxUses": 1}, 409, "coupon_used_up"),  # the one use made
        ({"endDate": "now"}, 422, "coupon_expired"),
        ({"value": "50"}, 201, "500.00"),  # the discount on ₹1,000
    ],
    ids=["lower maxUses", "end it now", "raise the discount"],
)
async def test_an_admins_change_waits_for_the_claims_in_progress_and_comes_before_later_ones(
    committed_client: httpx.AsyncClient,
    committed_db: Database,
    change: dict[str, str | int],
    status: int,
    outcome: str,
) -> None:
    """A claim is in progress; an admin changes the coupon; then a buyer checks out, having
    read the coupon as it was. The admin waits for the claim, and the buyer, though a
    shared claim could join the one in progress, queues behind the admin (no admin waits
    for a stream of claims to dry up) and then gets the coupon as changed: its new limit,
    window or discount."""
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        admin, buyer = await make_admin(session), await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="CUTOFF", value="10", max_uses=bound + 50)
        await add_usages(session, coupon, 1, status=OrderStatus.pending)
        coupon_id = coupon.id
        admin_headers, buyer_headers = auth_headers(admin), auth_headers(buyer)
        body = {"courseIds": [course.id], "couponCode": "CUTOFF"}
    if change.get("endDate") == "now":
        change = {"endDate": utcnow().isoformat()}

    async with committed_db.transaction() as holder:
        await hold_coupon_claims(holder, coupon_id, exclusive=False)
        changing = asyncio.create_task(
            committed_client.patch(
                f"/api/v1/admin/coupons/{coupon_id}", json=change, headers=admin_headers
            )
        )
        await waiting_for_locks(committed_db, 1, what="admin changes")
        checkout = asyncio.create_task(committed_client.post(URL, json=body, headers=buyer_headers))
        await waiting_for_locks(committed_db, 2, what="admin changes and checkouts")
        assert not changing.done() and not checkout.done()
    changed, response = await changing, await checkout

    assert changed.status_code == 200, changed.text
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["coupon"]["discount"] == outcome
        assert response.json()["amount"] == "500.00"
    else:
        assert response.json()["code"] == outcome


async def test_the_last_uses_of_a_coupon_above_the_bound_go_to_exactly_that_many_buyers(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """maxUses K + 3, with K - 4 uses by refunded orders (they count): 7 left for 40 buyers
    at once. Each tries a shared claim first (maxUses is above K), finds too many usages
    for one, gives it back and takes the exclusive way: exactly 7 get the coupon."""
    buyers, left = 40, 7
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        users = [await make_user(session) for _ in range(buyers)]
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="LASTSEVEN", value="10", max_uses=bound + 3)
        await add_usages(session, coupon, bound + 3 - left, status=OrderStatus.refunded)
        headers = [auth_headers(user) for user in users]
        course_id, coupon_id = course.id, coupon.id

    responses = await asyncio.gather(
        *(
            committed_client.post(
                URL, json={"courseIds": [course_id], "couponCode": "LASTSEVEN"}, headers=h
            )
            for h in headers
        )
    )

    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == left, [r.text for r in responses if r.status_code >= 500]
    assert {r.json()["code"] for r in responses if r.status_code != 201} == {"coupon_used_up"}
    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == bound + 3
        rows = bound + 3
        assert await count_rows(session) == {
            "orders": rows,
            "items": rows,
            "usages": rows,
            "enrollments": 0,
        }
        await assert_order_invariants(session)


async def test_a_coupon_limited_to_no_more_than_the_bound_is_claimed_exclusively_at_once(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """Once a shared claim has told the process K, a coupon whose maxUses is below it (it
    can never be claimed shared) goes straight to the exclusive lock: no savepoint, no
    shared lock taken and given back first."""
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        first, second = await make_user(session), await make_user(session)
        course = await make_course(session, price="1000.00")
        await make_coupon(session, code="BIGONE", value="10", max_uses=bound + 50)
        await make_coupon(session, code="SMALLONE", value="10", max_uses=5)
        bodies = [
            (auth_headers(first), {"courseIds": [course.id], "couponCode": "BIGONE"}),
            (auth_headers(second), {"courseIds": [course.id], "couponCode": "SMALLONE"}),
        ]

    logs = []
    for headers, body in bodies:
        with captured(committed_db.engine, keep_savepoints=True) as log:
            response = await committed_client.post(URL, json=body, headers=headers)
        assert response.status_code == 201, response.text
        logs.append(log)
    big, small = logs
    assert claim_locks(big) == ["shared"] and len(savepoints(big)) == 1
    assert claim_locks(small) == ["exclusive"] and savepoints(small) == []


async def test_a_coupon_with_a_negative_limit_is_used_up(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """The API refuses maxUses below 1, but no CHECK does: data adopted from the Node app
    may hold one. It is a used-up coupon (409), not a negative LIMIT's error (a 500)."""
    async with committed_db.transaction() as session:
        buyer = await make_user(session)
        course = await make_course(session, price="1000.00")
        await make_coupon(session, code="BROKEN", value="10", max_uses=-1)
        headers, body = auth_headers(buyer), {"courseIds": [course.id], "couponCode": "BROKEN"}

    response = await committed_client.post(URL, json=body, headers=headers)

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "coupon_used_up"


# --- a live unlimited coupon given a limit ---------------------------------------------------


async def an_unlimited_coupon_with_two_uses(
    database: Database, *, code: str
) -> tuple[str, dict[str, str], dict[str, str], dict[str, Any]]:
    """An unlimited coupon used twice (orders not cancelled), an admin, a new buyer and
    their checkout of one course with it, all committed: (coupon id, admin's headers,
    buyer's headers, checkout body)."""
    async with database.transaction() as session:
        admin, buyer = await make_admin(session), await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code=code, value="10")
        await add_usages(session, coupon, 2, status=OrderStatus.pending)
        body = {"courseIds": [course.id], "couponCode": code}
        return coupon.id, auth_headers(admin), auth_headers(buyer), body


async def test_a_checkout_that_read_the_coupon_unlimited_sees_a_limit_set_before_its_insert(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """The checkout reads the coupon without a limit (it claims no use), then an admin's
    change giving it a limit its two uses already reach commits before the order's insert:
    it used to add a third use anyway; the insert now waits for the change, writes nothing,
    and the checkout claims a use as for any limited coupon: used up."""
    coupon_id, _, buyer_headers, body = await an_unlimited_coupon_with_two_uses(
        committed_db, code="GOESLIMITED"
    )

    async with committed_db.transaction() as admin:
        # What the admin's PATCH does (coupons.service.update_coupon): the row FOR UPDATE.
        await admin.execute(
            text('SELECT 1 FROM "Coupon" WHERE id = :id FOR UPDATE'), {"id": coupon_id}
        )
        checkout = asyncio.create_task(committed_client.post(URL, json=body, headers=buyer_headers))
        await waiting_for_locks(committed_db, 1, what="checkouts")
        await admin.execute(
            text('UPDATE "Coupon" SET "maxUses" = 2 WHERE id = :id'), {"id": coupon_id}
        )
    response = await checkout

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "coupon_used_up"
    async with committed_db.transaction() as session:
        usages = await session.scalar(
            text('SELECT count(*) FROM "CouponUsage" WHERE "couponId" = :id'), {"id": coupon_id}
        )
        assert usages == 2
        await assert_order_invariants(session)


async def test_an_admin_giving_a_coupon_a_limit_waits_for_the_uses_in_flight(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """A checkout that found the coupon unlimited has written its use and not committed yet
    (it holds the coupon's row FOR KEY SHARE, as the usage's foreign-key check does). The
    admin's limit waits for it, so that the next checkout counts that use: 3 uses, limit 3,
    used up (before, the change went through at once and a claim just after it could not
    see the third use: a fourth was sold)."""
    coupon_id, admin_headers, buyer_headers, body = await an_unlimited_coupon_with_two_uses(
        committed_db, code="INFLIGHT"
    )

    async with committed_db.transaction() as in_flight:
        await in_flight.execute(
            text('SELECT 1 FROM "Coupon" WHERE id = :id FOR KEY SHARE'), {"id": coupon_id}
        )
        coupon = await in_flight.get(Coupon, coupon_id)
        assert coupon is not None
        await add_usages(in_flight, coupon, 1, status=OrderStatus.pending)
        changing = asyncio.create_task(
            committed_client.patch(
                f"/api/v1/admin/coupons/{coupon_id}", json={"maxUses": 3}, headers=admin_headers
            )
        )
        await waiting_for_locks(committed_db, 1, what="admin changes")
        assert not changing.done()
    changed = await changing
    response = await committed_client.post(URL, json=body, headers=buyer_headers)

    assert changed.status_code == 200, changed.text
    assert changed.json()["maxUses"] == 3
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "coupon_used_up"


async def test_the_same_in_a_session_sees_the_limit_on_its_second_read(
    committed_db: Database,
) -> None:
    """As above, with checkout run in an ORM session (as the CLI and services can): the
    coupon read again must give the session's object the new limit, not keep the old."""
    coupon_id, _, _, body = await an_unlimited_coupon_with_two_uses(
        committed_db, code="SESSIONLIMITED"
    )
    async with committed_db.transaction() as session:
        buyer = await make_user(session)

    async def place() -> None:
        async with committed_db.transaction() as session:
            user = await session.get(User, buyer.id)
            assert user is not None
            await place_order(
                session,
                user=user,
                course_ids=body["courseIds"],
                coupon_code=body["couponCode"],
                payment_method=None,
                idempotency_key=None,
            )

    async with committed_db.transaction() as admin:
        await admin.execute(
            text('SELECT 1 FROM "Coupon" WHERE id = :id FOR UPDATE'), {"id": coupon_id}
        )
        checkout = asyncio.create_task(place())
        await waiting_for_locks(committed_db, 1, what="checkouts")
        await admin.execute(
            text('UPDATE "Coupon" SET "maxUses" = 2 WHERE id = :id'), {"id": coupon_id}
        )

    with pytest.raises(CouponUsedUp):
        await checkout


async def test_a_coupon_deleted_before_the_orders_insert_is_not_found(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """Read, then deleted by an admin before the insert: the insert writes nothing (no
    foreign-key failure), and the coupon read again is gone: 404, nothing written."""
    async with committed_db.transaction() as session:
        buyer = await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="GONESOON", value="10")
    coupon_id = coupon.id
    body = {"courseIds": [course.id], "couponCode": "GONESOON"}

    async with committed_db.transaction() as admin:
        await admin.execute(
            text('SELECT 1 FROM "Coupon" WHERE id = :id FOR UPDATE'), {"id": coupon_id}
        )
        checkout = asyncio.create_task(
            committed_client.post(URL, json=body, headers=auth_headers(buyer))
        )
        await waiting_for_locks(committed_db, 1, what="checkouts")
        await admin.execute(text('DELETE FROM "Coupon" WHERE id = :id'), {"id": coupon_id})
    response = await checkout

    assert response.status_code == 404, response.text
    assert response.json()["code"] == "coupon_not_found"
    async with committed_db.transaction() as session:
        orders = await session.scalar(
            text('SELECT count(*) FROM "Order" WHERE "userId" = :id'), {"id": buyer.id}
        )
    assert orders == 0
