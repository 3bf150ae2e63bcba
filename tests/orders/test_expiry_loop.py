"""The server expires stale pending orders by itself, in the background."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import Text, literal_column, select

from coursehub.app import create_app
from coursehub.core.database import Database
from coursehub.core.models import utcnow
from coursehub.core.settings import Settings
from coursehub.orders.expiry import expire_stale_orders
from coursehub.orders.models import Order, OrderStatus
from tests.factories import make_course, make_order, make_user


async def order_status(database: Database, order_id: str) -> OrderStatus:
    async with database.transaction() as session:
        status = await session.scalar(select(Order.status).where(Order.id == order_id))
    assert status is not None
    return status


async def test_the_running_app_expires_stale_pending_orders(
    committed_db: Database, settings: Settings
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
        course = await make_course(session)
        stale = await make_order(
            session, user=user, courses=[course], created_at=utcnow() - timedelta(hours=2)
        )
        fresh = await make_order(session, user=user, courses=[course])
    app = create_app(
        settings.model_copy(update={"order_expiry_interval_seconds": 0.05}),
        database=committed_db,
    )

    async with app.router.lifespan_context(app):
        for _ in range(200):
            if await order_status(committed_db, stale.id) == OrderStatus.cancelled:
                break
            await asyncio.sleep(0.05)

    assert await order_status(committed_db, stale.id) == OrderStatus.cancelled
    assert await order_status(committed_db, fresh.id) == OrderStatus.pending


async def test_the_loop_can_be_turned_off(committed_db: Database, settings: Settings) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
        course = await make_course(session)
        stale = await make_order(
            session, user=user, courses=[course], created_at=utcnow() - timedelta(hours=2)
        )
    app = create_app(
        settings.model_copy(update={"order_expiry_interval_seconds": 0}), database=committed_db
    )

    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.3)

    assert await order_status(committed_db, stale.id) == OrderStatus.pending


async def test_each_batch_of_a_backlog_commits_in_its_own_transaction(
    committed_db: Database,
) -> None:
    async with committed_db.transaction() as session:
        user = await make_user(session)
        course = await make_course(session)
        stale_ids = [
            (
                await make_order(
                    session, user=user, courses=[course], created_at=utcnow() - timedelta(hours=2)
                )
            ).id
            for _ in range(5)
        ]
        fresh = await make_order(session, user=user, courses=[course])

    expired = await expire_stale_orders(committed_db, ttl=timedelta(minutes=30), batch_size=2)

    assert len(expired) == 5
    async with committed_db.transaction() as session:
        # xmin is the id of the transaction that last wrote the row: one per batch.
        xmin = literal_column('"Order".xmin::text', type_=Text)
        rows = list(
            await session.execute(select(Order.status, xmin).where(Order.id.in_(stale_ids)))
        )
    assert {status for status, _ in rows} == {OrderStatus.cancelled}
    per_transaction = Counter(writer for _, writer in rows)
    assert sorted(per_transaction.values()) == [1, 2, 2]
    assert await order_status(committed_db, fresh.id) == OrderStatus.pending
