"""The server expires stale pending orders by itself, in the background."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from coursehub.app import create_app
from coursehub.core.database import Database
from coursehub.core.models import utcnow
from coursehub.core.settings import Settings
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
