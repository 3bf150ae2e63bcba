"""A limited coupon's uses claimed at checkout: far from its limit under a shared lock on its
row (checkouts of the coupon do not queue), for its last uses under the exclusive lock after
an exact count (coupons/repository.py `claim_use_shared`). K is the server's bound on
transactions in progress, as that module computes it."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.coupons import repository as coupons_repository
from coursehub.models import Coupon, OrderStatus, PaymentStatus
from tests.factories import auth_headers, make_coupon, make_course, make_order, make_user
from tests.orders.invariants import assert_order_invariants, count_rows
from tests.queries import captured, waiting_for_locks

URL = "/api/v1/orders"
# Long enough for a checkout that does not wait to finish on a loaded machine; a checkout
# that waits for the lock held meanwhile never finishes within it.
NOT_QUEUED_WITHIN = 15.0


async def in_progress_bound(session: AsyncSession) -> int:
    settings = ", ".join(f"'{name}'" for name in coupons_repository.IN_PROGRESS_SLOTS)
    statement = text(f"SELECT sum(setting::int) FROM pg_settings WHERE name IN ({settings})")
    return int(await session.scalar(statement) or 0)


async def hold_coupon_row(session: AsyncSession, coupon_id: str, *, exclusive: bool) -> None:
    """Lock the coupon's row as a checkout's claim holds it, until `session` ends."""
    statement = select(Coupon.id).where(Coupon.id == coupon_id)
    locked = (
        statement.with_for_update(key_share=True)  # FOR NO KEY UPDATE: an exclusive claim
        if exclusive
        else statement.with_for_update(read=True)  # FOR SHARE: a shared claim
    )
    assert (await session.execute(locked)).scalar_one() == coupon_id


async def test_checkouts_far_from_a_coupons_limit_do_not_queue_on_it(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        buyer = await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="LAUNCH", value="10", max_uses=bound + 50)
        headers, body = auth_headers(buyer), {"courseIds": [course.id], "couponCode": "LAUNCH"}
        coupon_id = coupon.id

    async with committed_db.transaction() as holder:
        # Another checkout's shared claim, in progress.
        await hold_coupon_row(holder, coupon_id, exclusive=False)
        response = await asyncio.wait_for(
            committed_client.post(URL, json=body, headers=headers), NOT_QUEUED_WITHIN
        )
        assert response.status_code == 201, response.text
        assert response.json()["coupon"]["code"] == "LAUNCH"

    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == 1


async def test_a_shared_claim_waits_for_an_exclusive_one(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """The exclusive claimant counts exactly and sees every use: no shared claim may be in
    progress beside it, and one that comes later counts after it has committed."""
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        buyer = await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="LAUNCH2", value="10", max_uses=bound + 50)
        headers, body = auth_headers(buyer), {"courseIds": [course.id], "couponCode": "LAUNCH2"}
        coupon_id = coupon.id

    async with committed_db.transaction() as holder:
        await hold_coupon_row(holder, coupon_id, exclusive=True)
        checkout = asyncio.create_task(committed_client.post(URL, json=body, headers=headers))
        await waiting_for_locks(committed_db, 1, what="checkouts")
        assert not checkout.done()
    response = await checkout
    assert response.status_code == 201, response.text


async def test_a_claim_of_one_of_the_last_uses_is_exclusive(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """maxUses K + 2 with three usages of cancelled orders: none counts, yet all three could
    (as far as the index-only count can tell), so the checkout is too near the limit for a
    shared claim. It gives back the shared lock it took to count, and waits for the
    exclusive one until the shared claim in progress has committed."""
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        earlier, buyer = await make_user(session), await make_user(session)
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="NEARLY", value="10", max_uses=bound + 2)
        for _ in range(3):
            await make_order(
                session,
                user=earlier,
                courses=[course],
                coupon=coupon,
                discount="100.00",
                status=OrderStatus.cancelled,
            )
        headers, body = auth_headers(buyer), {"courseIds": [course.id], "couponCode": "NEARLY"}
        coupon_id = coupon.id

    async with committed_db.transaction() as holder:
        await hold_coupon_row(holder, coupon_id, exclusive=False)
        checkout = asyncio.create_task(committed_client.post(URL, json=body, headers=headers))
        await waiting_for_locks(committed_db, 1, what="checkouts")
        assert not checkout.done()
    response = await checkout
    assert response.status_code == 201, response.text
    async with committed_db.transaction() as session:
        assert await coupons_repository.count_uses(session, coupon_id) == 1


async def test_the_last_uses_of_a_coupon_above_the_bound_go_to_exactly_that_many_buyers(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """maxUses K + 3, with K - 4 uses by refunded orders (they count): 7 left for 40 buyers
    at once.
    Each tries a shared claim first (maxUses is above K), finds too many usages for one,
    gives it back and takes the exclusive way: exactly 7 get the coupon."""
    buyers, left = 40, 7
    async with committed_db.transaction() as session:
        bound = await in_progress_bound(session)
        earlier = await make_user(session)
        users = [await make_user(session) for _ in range(buyers)]
        course = await make_course(session, price="1000.00")
        coupon = await make_coupon(session, code="LASTSEVEN", value="10", max_uses=bound + 3)
        for _ in range(bound + 3 - left):
            await make_order(
                session,
                user=earlier,
                courses=[course],
                coupon=coupon,
                discount="100.00",
                status=OrderStatus.refunded,
                payment_status=PaymentStatus.refunded,
            )
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
        earlier_orders = bound + 3 - left
        assert await count_rows(session) == {
            "orders": earlier_orders + left,
            "items": earlier_orders + left,
            "usages": earlier_orders + left,
            "enrollments": 0,
        }
        await assert_order_invariants(session)


async def test_a_coupon_limited_to_no_more_than_the_bound_is_claimed_exclusively_at_once(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """Once a shared claim has told the process K, a coupon whose maxUses is not above it
    (it can never be claimed shared) goes straight to the exclusive lock: no savepoint, no
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
        logs.append(log.statements)
    big, small = logs
    assert any(s.startswith("SAVEPOINT") for s in big)
    assert any(s.rstrip().endswith("FOR SHARE") for s in big)
    assert not any(s.startswith("SAVEPOINT") for s in small)
    assert not any(s.rstrip().endswith("FOR SHARE") for s in small)
    assert any(s.rstrip().endswith("FOR NO KEY UPDATE") for s in small)
